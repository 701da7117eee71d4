"""Benchmarks: measured numbers and ratios against baselines measured in the same run.

``fastbfm bench sim`` and ``fastbfm bench relabel`` print them; nothing here is asserted by tests.
"""

from __future__ import annotations

import os
import time

import mujoco
import numpy as np
import torch
from mujoco import rollout

from fastbfm.bfm.fb import FBModel, FBModelConfig
from fastbfm.data.relabel import relabel, relabel_per_sample
from fastbfm.envs.batch import BatchedEnv
from fastbfm.envs.dmc import make_env
from fastbfm.envs.registry import get_domain, get_task


def _actor(domain_name: str, hidden: int) -> FBModel:
    domain = get_domain(domain_name)
    torch.manual_seed(0)
    return FBModel(FBModelConfig(domain.observation_dim, domain.action_dim, z_dim=50, hidden_dim=hidden))


@torch.inference_mode()
def bench_sim(task_name: str = "walker:walk", num_envs: int = 64, hidden: int = 256, steps: int = 300, threads: int | None = None) -> dict:
    """Closed-loop env-steps/s with a ``hidden``-wide FB actor: fastbfm's batched rollout (one policy call
    per step for all simulations) against dm_control's Python ``env.step`` loop with the same actor at
    batch 1, and against raw physics (``mujoco.rollout``, open loop, same threads)."""
    task = get_task(task_name)
    domain = get_domain(task.domain)
    threads = threads or min(2, os.cpu_count() or 1)
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)  # MuJoCo's threads get the cores while it steps; the small actor needs one
    model = _actor(task.domain, hidden)
    z = model.sample_z(num_envs, torch.Generator().manual_seed(0))
    rng = np.random.default_rng(0)
    starts = domain.sample_initial_state(rng, num_envs)

    env = BatchedEnv(task, num_envs, nthread=threads)
    obs = env.set_state(starts)
    start = time.perf_counter()
    for _ in range(steps):
        obs, _ = env.step(model.act(torch.from_numpy(obs), z).numpy())
    batched = num_envs * steps / (time.perf_counter() - start)

    dm_env = make_env(task, seed=0)
    ts = dm_env.reset()
    dm_steps = max(steps, 200)
    start = time.perf_counter()
    for _ in range(dm_steps):
        obs1 = torch.as_tensor(ts.observation["observations"], dtype=torch.float32)[None]
        ts = dm_env.step(model.act(obs1, z[:1]).numpy()[0])
        if ts.last():
            ts = dm_env.reset()
    dm_loop = dm_steps / (time.perf_counter() - start)

    physics = domain.make_physics()
    model_ptr = physics.model.ptr
    nstate = mujoco.mj_stateSize(model_ptr, mujoco.mjtState.mjSTATE_FULLPHYSICS)
    initial = np.empty((num_envs, nstate))
    data = mujoco.MjData(model_ptr)
    for i, s in enumerate(starts):
        data.qpos[:], data.qvel[:], data.act[:] = s[: model_ptr.nq], s[model_ptr.nq : model_ptr.nq + model_ptr.nv], s[model_ptr.nq + model_ptr.nv :]
        mujoco.mj_getState(model_ptr, data, initial[i], mujoco.mjtState.mjSTATE_FULLPHYSICS)
    physics_steps = steps * domain.n_sub_steps
    control = rng.uniform(-1, 1, (num_envs, physics_steps, domain.action_dim))
    with rollout.Rollout(nthread=threads) as pool:
        datas = [mujoco.MjData(model_ptr) for _ in range(threads)]
        pool.rollout(model_ptr, datas, initial, control[:, :10])
        start = time.perf_counter()
        pool.rollout(model_ptr, datas, initial, control)
        raw = num_envs * steps / (time.perf_counter() - start)
    torch.set_num_threads(torch_threads)
    return {
        "task": task.full_name,
        "num_envs": num_envs,
        "actor_hidden": hidden,
        "steps": steps,
        "mujoco_threads": threads,
        "batched_steps_per_s": round(batched),
        "dm_control_loop_steps_per_s": round(dm_loop),
        "raw_physics_steps_per_s": round(raw),
        "speedup_vs_dm_control": round(batched / dm_loop, 2),
        "fraction_of_raw_physics": round(batched / raw, 3),
    }


def bench_relabel(task_name: str = "walker:walk", num_samples: int = 50_000) -> dict:
    """Vectorised relabelling of ``num_samples`` states reached by random rollouts, against the
    per-sample dm_control loop (set state, ``forward``, ``get_reward``) on the same states; set-up
    (building a physics or a batch, done once per task and process) excluded from both."""
    task = get_task(task_name)
    domain = get_domain(task.domain)
    rng = np.random.default_rng(0)
    num_envs = 100
    env = BatchedEnv(domain, num_envs)
    env.set_state(domain.sample_initial_state(rng, num_envs))
    states, actions = [], []
    for _ in range(-(-num_samples // num_envs)):
        action = rng.uniform(-1, 1, (num_envs, domain.action_dim))
        env.step(action)
        states.append(env.get_state())
        actions.append(action)
    states = np.concatenate(states)[:num_samples]
    actions = np.concatenate(actions)[:num_samples]

    # Steady state for both paths: their one-time set-up (a physics, a batch) is built by a warm-up call.
    relabel(task, states[:10], actions[:10])
    relabel_per_sample(task, states[:10], actions[:10])
    start = time.perf_counter()
    fast = relabel(task, states, actions)
    vectorised = time.perf_counter() - start
    start = time.perf_counter()
    slow = relabel_per_sample(task, states, actions)
    per_sample = time.perf_counter() - start
    return {
        "task": task.full_name,
        "samples": len(states),
        "vectorised_s": round(vectorised, 3),
        "per_sample_dm_control_s": round(per_sample, 3),
        "vectorised_samples_per_s": round(len(states) / vectorised),
        "per_sample_samples_per_s": round(len(states) / per_sample),
        "speedup": round(per_sample / vectorised, 1),
        "max_abs_difference": float(np.abs(fast - slow).max()),
    }


def _random_transitions(obs_dim: int, action_dim: int, n: int, device: torch.device):
    """Random transitions of the domain's sizes on ``device`` (an update's cost does not depend on the
    values), in 25-step episodes for HILP's goal sampling."""
    from fastbfm.data.dataset import TorchTransitions

    g = torch.Generator().manual_seed(0)
    obs = torch.randn(n, obs_dim, generator=g)
    action = torch.rand(n, action_dim, generator=g) * 2 - 1
    ends = ((torch.arange(n) // 25 + 1) * 25).clamp_max(n)
    return TorchTransitions(*(t.to(device) for t in (obs, action, obs.roll(-1, 0), torch.ones(n), ends)))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(step, updates: int, warmup: int, device: torch.device) -> float:
    """Updates per second of ``step`` after ``warmup`` calls (which include a CUDA graph's capture)."""
    for _ in range(warmup):
        step()
    _sync(device)
    start = time.perf_counter()
    for _ in range(updates):
        step()
    _sync(device)
    return updates / (time.perf_counter() - start)


def _fastbfm_step(name: str, preset_name: str, obs_dim: int, action_dim: int, data, device: torch.device, graphs: bool, bf16: bool = False):
    from fastbfm.bfm.algorithms import get_algorithm, preset
    from fastbfm.bfm.step import MetricSums, make_step, set_training_precision

    algo = get_algorithm(name)
    model_config, train_config = preset(name, preset_name, obs_dim, action_dim)
    torch.manual_seed(0)
    trainer = algo.trainer(algo.model(model_config).to(device), train_config, torch.Generator(device).manual_seed(0))
    set_training_precision(trainer, bf16)
    step = make_step(trainer, data, MetricSums(device), graphs=graphs)
    return step, model_config, train_config


def metamotivo_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("metamotivo") is not None


def metamotivo_fb_agent(
    obs_dim: int, action_dim: int, hidden: int, batch_size: int, z_dim: int, device: torch.device | str,
    discount: float = 0.99, cudagraphs: bool = False,
):  # fmt: skip
    """Meta Motivo's FBAgent at fastbfm FB's sizes and hyper-parameters (its DMC example's architecture:
    F and actor with one hidden layer of ``hidden``, B with two of 256, normalised B and z; learning
    rates 1e-4, orthonormality 1, half of the latents from B, actor pessimism 0.5: its defaults)."""
    import contextlib
    import dataclasses
    import io

    from metamotivo.fb import FBAgent, FBAgentConfig

    cfg = FBAgentConfig()
    cfg.model.obs_dim, cfg.model.action_dim, cfg.model.device = obs_dim, action_dim, str(device)
    cfg.model.norm_obs, cfg.model.seq_length = False, 1
    archi = cfg.model.archi
    archi.z_dim, archi.norm_z, archi.b.norm = z_dim, True, True
    archi.b.hidden_dim, archi.b.hidden_layers = 256, 2
    archi.f.hidden_dim, archi.f.hidden_layers = hidden, 1
    archi.actor.hidden_dim, archi.actor.hidden_layers = hidden, 1
    cfg.train.batch_size, cfg.train.discount = batch_size, discount
    cfg.train.lr_f = cfg.train.lr_b = cfg.train.lr_actor = 1e-4
    cfg.cudagraphs = cudagraphs
    with contextlib.redirect_stdout(io.StringIO()):  # it prints its compile settings
        return FBAgent(**dataclasses.asdict(cfg))


def _metamotivo_step(obs_dim: int, action_dim: int, hidden: int, batch_size: int, z_dim: int, device: torch.device, cudagraphs: bool, n: int):
    """Meta Motivo's FBAgent (:func:`metamotivo_fb_agent`) on a buffer of random transitions on ``device``."""
    from metamotivo.buffers.buffers import DictBuffer

    torch.manual_seed(0)
    agent = metamotivo_fb_agent(obs_dim, action_dim, hidden, batch_size, z_dim, device, cudagraphs=cudagraphs)
    rng = np.random.default_rng(0)
    obs = rng.standard_normal((n, obs_dim)).astype(np.float32)
    data = {
        "observation": obs,
        "action": rng.uniform(-1, 1, (n, action_dim)).astype(np.float32),
        "next": {"observation": np.roll(obs, -1, 0), "terminated": np.zeros((n, 1), bool)},
    }
    buffer = DictBuffer(capacity=n, device=str(device))
    buffer.extend(data)
    replay = {"train": buffer}
    counter = iter(range(1 << 62))
    return lambda: agent.update(replay, next(counter))


def bench_train(
    domain_name: str = "walker",
    updates: int = 200,
    threads: int | None = None,
    algorithms: list[str] | None = None,
    device: str = "auto",
    presets: list[str] | None = None,
    tf32: bool = True,
    baseline: bool = True,
    concurrent: int = 0,
    transitions: int = 100_000,
    bf16: bool | None = None,
) -> dict:
    """Gradient updates per second of each algorithm at each preset on ``device``, sampling batches from ``transitions`` random transitions of the domain's sizes kept on the
    device, as pretrain does (default presets: cpu, plus paper on a GPU). On CUDA each is timed eagerly and
    replayed from a CUDA graph. ``bf16``:
    None times float32 (TF32 on CUDA) and, where bf16 is native, bf16 side by side (``bf16_speedup``);
    True or False times only that precision. The row of pretrain's default settings (per preset) has
    ``default``.

    ``baseline``: Meta Motivo's FBAgent at the same sizes as fastbfm's FB at each preset, timed in the
    same run (skipped if the ``metamotivo`` package is not installed; with CUDA graphs too on CUDA when
    ``tensordict`` is installed). ``concurrent`` > 1 (CUDA only): that many FB models at the first
    preset trained in one process, their graphs replayed on separate streams, against the same models
    replayed one after another on one stream (total updates per second of all models)."""
    from fastbfm.bfm.algorithms import ALGORITHMS
    from fastbfm.bfm.device import cpu_vector_extensions, default_bf16, device_name, native_bf16, resolve_device, set_matmul_precision

    domain = get_domain(domain_name)
    device = resolve_device(device)
    set_matmul_precision(device, tf32)
    cuda = device.type == "cuda"
    torch_threads, threads = torch.get_num_threads(), threads or min(2, os.cpu_count() or 1)
    torch.set_num_threads(threads)
    presets = presets or (["cpu", "paper"] if cuda else ["cpu"])
    obs_dim, action_dim = domain.observation_dim, domain.action_dim
    data = _random_transitions(obs_dim, action_dim, transitions, device)
    warmup = 10 if cuda else 3  # CUDA: graph capture and cuBLAS heuristics happen in the first calls
    full = "tf32" if cuda and tf32 else "fp32"
    # bf16 is timed wherever it is native; elsewhere it is emulated (slower than fp32) and only fp32 is timed
    precisions = ([full] + (["bf16"] if native_bf16(device) else [])) if bf16 is None else ["bf16" if bf16 else full]
    results = []
    for preset_name in presets:
        for name in algorithms or list(ALGORITHMS):
            rows = []
            for graphs in (False, True) if cuda else (False,):
                for precision in precisions:
                    step, model_config, train_config = _fastbfm_step(
                        name, preset_name, obs_dim, action_dim, data, device, graphs, bf16=precision == "bf16"
                    )
                    rate = _timed(step, updates, warmup, device)
                    default_precision = "bf16" if default_bf16(device, model_config.hidden_dim) else full
                    rows.append(
                        {
                            "implementation": "fastbfm",
                            "algorithm": name,
                            "preset": preset_name,
                            "mode": "cuda_graphs" if graphs else "eager",
                            "precision": precision,
                            "default": precision == default_precision and graphs == cuda,
                            "captured": bool(getattr(step, "captured", False)),
                            "updates_per_s": round(rate, 2),
                            "batch_size": train_config.batch_size,
                            "hidden": model_config.hidden_dim,
                            "z_dim": model_config.z_dim,
                        }
                    )
            fp32 = {(r["mode"]): r["updates_per_s"] for r in rows if r["precision"] != "bf16"}
            for r in rows:
                if r["precision"] == "bf16" and r["mode"] in fp32:
                    r["bf16_speedup"] = round(r["updates_per_s"] / fp32[r["mode"]], 2)
            results += rows
            if name == "fb" and baseline and metamotivo_available():
                for graphs in (False, True) if cuda else (False,):
                    mode = [r for r in rows if r["mode"] == ("cuda_graphs" if graphs else "eager")]
                    results += _metamotivo_rows(mode, obs_dim, action_dim, device, updates, warmup, transitions, graphs)
    out = {
        "device": device_name(device),
        "device_type": device.type,
        "vector_extensions": cpu_vector_extensions(),
        "native_bf16": native_bf16(device),
        "torch": torch.__version__,
        "threads": threads,
        "tf32": tf32 and cuda,
        "domain": domain_name,
        "updates_timed": updates,
        "results": results,
    }
    if concurrent > 1:
        out["concurrent"] = _bench_concurrent(concurrent, presets[0], obs_dim, action_dim, data, device, updates, warmup)
    torch.set_num_threads(torch_threads)
    return out


def _metamotivo_rows(ours: list[dict], obs_dim, action_dim, device, updates, warmup, transitions, graphs) -> list[dict]:
    """Meta Motivo's FBAgent (float32, its defaults) at the sizes of ``ours`` (fastbfm's rows of one preset
    and mode), eager or its CUDA-graph path if ``graphs``; each fastbfm row gets its ratio to it."""
    import importlib.util

    if not ours or (graphs and importlib.util.find_spec("tensordict") is None):
        return []
    first = ours[0]
    step = _metamotivo_step(obs_dim, action_dim, first["hidden"], first["batch_size"], first["z_dim"], device, graphs, transitions)
    rate = _timed(step, updates, warmup, device)
    for row in ours:
        row["vs_metamotivo"] = round(row["updates_per_s"] / rate, 2)
    return [
        {
            **{k: first[k] for k in ("algorithm", "preset", "mode", "batch_size", "hidden", "z_dim")},
            "implementation": "metamotivo",
            "precision": "fp32",
            "updates_per_s": round(rate, 2),
        }
    ]


def _bench_concurrent(k: int, preset_name: str, obs_dim, action_dim, data, device, updates, warmup) -> dict:
    from fastbfm.errors import FastBFMError

    if device.type != "cuda":
        raise FastBFMError("--concurrent needs a CUDA device")
    steps = [_fastbfm_step("fb", preset_name, obs_dim, action_dim, data, device, graphs=True)[0] for _ in range(k)]
    streams = [torch.cuda.Stream(device) for _ in range(k)]

    def one_stream():
        for step in steps:
            step()

    def own_streams():
        for stream, step in zip(streams, steps):
            with torch.cuda.stream(stream):
                step()
        for stream in streams:
            torch.cuda.current_stream(device).wait_stream(stream)

    sequential = _timed(one_stream, updates, warmup, device) * k
    parallel = _timed(own_streams, updates, warmup, device) * k
    return {
        "models": k,
        "algorithm": "fb",
        "preset": preset_name,
        "total_updates_per_s_one_stream": round(sequential, 1),
        "total_updates_per_s_own_streams": round(parallel, 1),
        "speedup": round(parallel / sequential, 2),
    }
