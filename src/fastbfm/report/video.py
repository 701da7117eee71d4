"""Videos of policies pi(., z): several latents from one start state, side by side, rendered headless.

The latents are simulated together in one :class:`~fastbfm.envs.batch.BatchedEnv` (the evaluation's
simulator, so the returns shown are evaluation returns); each rendered frame copies a simulation's state
into a dm_control ``Physics`` of the domain and renders it with MuJoCo (``MUJOCO_GL=egl`` by default).
GIFs need only Pillow; MP4 needs ``imageio-ffmpeg`` (``pip install 'fastbfm[video]'`` or ``pip install imageio-ffmpeg``).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from tqdm.auto import tqdm

from fastbfm.bfm.protocol import BFM
from fastbfm.envs.batch import BatchedEnv
from fastbfm.envs.registry import Task, get_domain
from fastbfm.errors import FastBFMError
from fastbfm.report.run import adapted_latent, result_method, video_name  # noqa: F401 (video_name: part of this module's API)
from fastbfm.rollout import eval_start_states

FORMATS = (".gif", ".mp4")
LABEL_HEIGHT = 22


def _camera_id(physics, camera: str | int | None, domain: str) -> int:
    camera = get_domain(domain).camera if camera is None else camera
    names = [physics.model.id2name(i, "camera") for i in range(physics.model.ncam)]
    if isinstance(camera, str) and camera.lstrip("-").isdigit():
        camera = int(camera)
    if isinstance(camera, int):
        if -1 <= camera < len(names):
            return camera
    elif camera in names:
        return names.index(camera)
    raise FastBFMError(f"no camera '{camera}' in {domain}; cameras: {', '.join(names) or 'none'} (or an index, -1 = free camera)")


@functools.lru_cache(maxsize=1)
def _font():
    try:
        return ImageFont.load_default(size=14)
    except (TypeError, OSError):  # Pillow < 10.1 or without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _label(frame: np.ndarray, text: str) -> np.ndarray:
    image = Image.new("RGB", (frame.shape[1], frame.shape[0] + LABEL_HEIGHT), "white")
    image.paste(Image.fromarray(frame), (0, LABEL_HEIGHT))
    ImageDraw.Draw(image).text((6, 3), text, fill="black", font=_font())
    return np.asarray(image)


@torch.inference_mode()
def render_latents(
    model: BFM,
    task: Task,
    latents: dict[str, torch.Tensor],
    seed: int = 0,
    steps: int | None = None,
    every: int = 4,
    width: int = 320,
    height: int = 240,
    camera: str | int | None = None,
    labels: bool = True,
    progress: bool = False,
) -> tuple[list[np.ndarray], dict[str, float]]:
    """Roll out pi(., z) for each named latent from the same seeded start state (that of
    ``evaluate_latent(model, task, z, episodes=1, seed=seed)``, so each return equals that evaluation),
    rendering every ``every``-th step; returns the frames, panels concatenated left to right in the order
    of ``latents``, and each latent's return over the steps simulated."""
    if not latents:
        raise FastBFMError("nothing to render: give at least one latent")
    for name, z in latents.items():
        if tuple(torch.as_tensor(z).shape) != (model.z_dim,):
            raise FastBFMError(f"the {name} latent of {task.full_name} has {torch.as_tensor(z).numel()} values, the model's latents {model.z_dim}: "
                               "results of another model?")
    domain = get_domain(task.domain)
    steps = domain.episode_length if steps is None else min(steps, domain.episode_length)
    names = list(latents)
    given = [torch.as_tensor(latents[n], dtype=torch.float32).reshape(-1) for n in names]
    if given[0].shape[0] != model.z_dim:
        raise FastBFMError(f"latents have {given[0].shape[0]} dimensions, the model {model.z_dim}")
    # panels of one latent share one simulation: the same policy shows the same return (batch rows of the
    # policy's matmuls round differently, which a chaotic body would turn into different episodes)
    unique: list[torch.Tensor] = []
    row = []
    for latent in given:
        match = next((i for i, u in enumerate(unique) if torch.equal(u, latent)), None)
        if match is None:
            unique.append(latent)
            match = len(unique) - 1
        row.append(match)
    z = torch.stack(unique)
    env = BatchedEnv(task, num_envs=len(unique), nthread=1)
    obs = env.set_state(np.repeat(eval_start_states(task, 1, seed), len(unique), axis=0))
    physics = domain.make_physics()
    if task.decorate is not None:
        task.decorate(physics)
    camera_id = _camera_id(physics, camera, task.domain)
    returns = np.zeros(len(unique))

    def frame() -> np.ndarray:
        states, images, panels = env.get_state(), {}, []
        for name, i in zip(names, row):
            if i not in images:
                with physics.reset_context():
                    physics.set_state(states[i])
                images[i] = physics.render(height=height, width=width, camera_id=camera_id)
            panels.append(_label(images[i], f"{name}   return {returns[i]:.1f}") if labels else images[i])
        return np.concatenate(panels, axis=1)

    frames = [frame()]
    for t in tqdm(range(1, steps + 1), desc=f"render {task.full_name}", unit="step", disable=not progress):
        obs, reward = env.step(model.act(torch.from_numpy(obs), z, mean=True).numpy())
        returns += reward
        if t % every == 0 or t == steps:
            frames.append(frame())
    return frames, {n: float(returns[i]) for n, i in zip(names, row)}


def write_video(frames: list[np.ndarray], path: str | Path, fps: int = 25) -> Path:
    """Write RGB frames as a looping GIF (Pillow) or an H.264 MP4 (imageio-ffmpeg), by ``path``'s suffix."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise FastBFMError(f"videos are written as .gif or .mp4, got '{path.name}'")
    if not frames:
        raise FastBFMError("no frames to write")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{suffix}")  # one per writer; the suffix tells the format
    try:
        _write_frames(frames, tmp, suffix, fps)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _write_frames(frames: list[np.ndarray], tmp: Path, suffix: str, fps: int) -> None:
    if suffix == ".gif":
        # One shared palette: per-frame palettes flicker and cost more bytes.
        first = Image.fromarray(frames[0]).quantize(colors=255, method=Image.Quantize.MEDIANCUT)
        images = [first] + [Image.fromarray(f).quantize(palette=first, dither=Image.Dither.NONE) for f in frames[1:]]
        images[0].save(tmp, save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0, optimize=False)
    else:
        try:
            import imageio_ffmpeg
        except ImportError:
            raise FastBFMError("MP4 needs imageio-ffmpeg: pip install imageio-ffmpeg (or write a .gif)") from None
        h, w = frames[0].shape[:2]
        pad_h, pad_w = h % 2, w % 2  # yuv420p needs even sizes
        writer = imageio_ffmpeg.write_frames(
            str(tmp), (w + pad_w, h + pad_h), fps=fps, codec="libx264", pix_fmt_out="yuv420p", macro_block_size=1,
            output_params=["-movflags", "+faststart"],
        )
        writer.send(None)
        for f in frames:
            writer.send(np.ascontiguousarray(np.pad(f, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")))
        writer.close()


def before_after(model: BFM, result: dict, adapted_seed: int | None = None, dataset: Callable | None = None) -> dict[str, torch.Tensor]:
    """The zero-shot and adapted latents of one result of ``fastbfm adapt --out`` (or the demo).

    Results of label-free methods store no zero-shot latent: it is then inferred from the labelled
    samples of ``dataset()``, called only then (the caller decides whether that may collect data).
    """
    from fastbfm.adapt.methods import label
    from fastbfm.envs import get_task

    seed, z_adapted = adapted_latent(result, adapted_seed)
    if result.get("z_zero_shot") is not None:
        z_zero_shot = torch.tensor(result["z_zero_shot"], dtype=torch.float32)
    else:
        if dataset is None:
            raise FastBFMError(f"the results of {result['task']} store no zero-shot latent: infer it from a dataset")
        z_zero_shot = zero_shot_latent(model, get_task(result["task"]), dataset())
    method = result_method(result)
    return {"zero-shot": z_zero_shot, f"{label(method)} (seed {seed})": torch.tensor(z_adapted, dtype=torch.float32)}


def zero_shot_latent(model: BFM, task: Task, dataset) -> torch.Tensor:
    """The zero-shot latent of ``task`` from 50k samples of ``dataset`` relabelled with its reward."""
    from fastbfm.adapt.zero_shot import infer_task

    return infer_task(model, task, dataset).z


EVOLUTION_AT = (0, 5, 10, 20)
"""Budgets (adaptation episodes) whose deployed latents the evolution video shows side by side."""


def evolution(result: dict, adapted_seed: int | None = None, at: tuple[float, ...] = EVOLUTION_AT) -> dict[str, torch.Tensor]:
    """The latent deployed after each budget of ``at`` in one result of ``fastbfm adapt --out``: the latent
    evaluated at the last point of the curve with at most that many episodes spent (the result stores the
    latent of every evaluated point). Panels are named ``episode N``."""
    from fastbfm.report.run import adapted_latent

    seed, _ = adapted_latent(result, adapted_seed)
    per_seed = result.get("latents")
    if not per_seed:
        raise FastBFMError(f"the results of {result['task']} hold no latents per point (written by an older fastbfm): "
                           "rerun `fastbfm adapt --out RUN_DIR` to record them")
    seeds = result.get("seeds") or list(range(len(per_seed)))
    points, latents = result["episodes"], per_seed[seeds.index(seed)]
    if latents is None or any(z is None for z in latents):
        raise FastBFMError(f"{result.get('method', 'lola')} on {result['task']} deploys no single latent per point")
    budget = points[-1]
    if max(at) > budget + 1e-9:
        raise FastBFMError(f"the run spent {budget:g} episodes; cannot show the policy after {max(at):g} (choose --at within the budget)")
    panels = {}
    for episodes in at:
        index = max(i for i, e in enumerate(points) if e <= episodes + 1e-9)
        panels[f"episode {episodes:g}"] = torch.tensor(latents[index], dtype=torch.float32)
    return panels
