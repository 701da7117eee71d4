"""Pretraining with periodic checkpoints, exact resume and a JSONL metrics log.

A run folder holds the model (``model.safetensors`` + ``config.json``, loadable by ``load_model``),
the trainer state (``trainer.safetensors`` + ``trainer.json``: targets, optimisers, RNG, step) and
``metrics.jsonl``. Running the same command again continues from the last checkpoint.
"""

from __future__ import annotations

import json
import math
import time
from collections import defaultdict
from dataclasses import asdict
from pathlib import Path

import torch
from tqdm.auto import tqdm

from fastbfm.bfm.checkpoint import (
    FORMAT_VERSION,
    atomic_write,
    load_model,
    load_tensors,
    optimizer_tensors,
    read_json,
    restore_optimizer,
    save_model,
    save_tensors,
    write_json,
)
from fastbfm.bfm.algorithms import build_model, get_algorithm, preset
from fastbfm.bfm.metrics_log import METRICS_FILE, open_metrics_log, tensorboard_writer_class
from fastbfm.data.dataset import load_dataset
from fastbfm.envs.registry import domain_for_dims
from fastbfm.errors import FastBFMError
from fastbfm.schemas import ModelConfigFile, TrainerStateFile, check_seed

TRAINER_WEIGHTS, TRAINER_STATE = "trainer.safetensors", "trainer.json"


def _save_checkpoint(run_dir: Path, trainer, step: int, wall_time: float, meta: dict) -> None:
    tensors = {f"{name}.{k}": v for name, module in trainer.modules().items() for k, v in module.state_dict().items()}
    groups = {}
    for name, opt in trainer.optimizers().items():
        opt_tensors, groups[name] = optimizer_tensors(name, opt)
        tensors.update(opt_tensors)
    tensors["rng"] = trainer.generator.get_state()
    tensors.update({f"model.{k}": v for k, v in trainer.model.state_dict().items()})
    # A new weights file per checkpoint, named by trainer.json (the commit, written last): a kill at any
    # moment leaves trainer.json naming a complete file, so a resume never meets a torn checkpoint.
    weights = f"trainer-{step:09d}.safetensors"
    digest = save_tensors(run_dir / weights, tensors)
    save_model(trainer.model, run_dir, meta={**meta, "updates": step, "wall_time_s": round(wall_time, 1)})
    write_json(
        run_dir / TRAINER_STATE,
        {
            "format_version": FORMAT_VERSION,
            "step": step,
            "wall_time_s": wall_time,
            "train": asdict(trainer.config),
            "optimizers": groups,
            "weights": weights,
            "sha256": {weights: digest},
        },
    )
    for old in run_dir.glob("trainer*.safetensors"):
        if old.name != weights:
            old.unlink()


def _restore_checkpoint(run_dir: Path, trainer) -> tuple[int, float]:
    state = read_json(run_dir / TRAINER_STATE, TrainerStateFile)
    weights = state.get("weights", TRAINER_WEIGHTS)
    tensors = load_tensors(run_dir / weights, state["sha256"][weights])
    if any(k.startswith("model.") for k in tensors):
        trainer.model.load_state_dict({k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")})
    for name, module in trainer.modules().items():
        prefix = f"{name}."
        module.load_state_dict({k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)})
    for name, opt in trainer.optimizers().items():
        restore_optimizer(name, opt, tensors, state["optimizers"][name])
    trainer.generator.set_state(tensors["rng"])
    _truncate_metrics(run_dir / METRICS_FILE, int(state["step"]))
    for tmp in run_dir.glob("*.tmp"):  # left by a write that was killed
        tmp.unlink()
    return int(state["step"]), float(state["wall_time_s"])


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop rows logged after the checkpoint (and a line cut short by a kill): they are logged again."""
    if not path.is_file():
        return
    rows = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["step"] <= step:
                rows.append(line + "\n")
        except (json.JSONDecodeError, KeyError, TypeError):
            pass
    atomic_write(path, lambda tmp: Path(tmp).write_text("".join(rows)))


def _resumable_model(run_dir: Path):
    """The run's model. Its weights come from the trainer state, so model files torn by a kill between
    their two writes do not block the resume, which rewrites them."""
    try:
        return load_model(run_dir)
    except FastBFMError:
        config = read_json(run_dir / "config.json", ModelConfigFile)
        model = build_model(config["algorithm"], config["model"])
        model.meta = config.get("meta", {})
        return model


def _initial_model(init_from: str | Path, model_config):
    from fastbfm.zoo import resolve_model

    model = load_model(resolve_model(init_from))
    if model.config != model_config:
        raise FastBFMError(f"cannot start from {init_from}: its model config {model.config} differs from {model_config}")
    return model


def pretrain(
    dataset_dir: str | Path,
    run_dir: str | Path,
    preset_name: str = "cpu",
    seed: int = 0,
    num_updates: int | None = None,
    checkpoint_every: int = 5000,
    log_every: int = 1000,
    threads: int = 2,
    progress: bool = True,
    meta: dict | None = None,
    init_from: str | Path | None = None,
    train_overrides: dict | None = None,
    resimulate: bool = False,
    algorithm: str = "fb",
    tensorboard: bool = False,
) -> Path:
    """Train a BFM (``algorithm``: fb, hilp or psm) on a reward-free dataset; resumes if ``run_dir``
    holds a checkpoint.

    ``init_from`` starts a new run from the weights (and input normalisation) of a model checkpoint,
    with fresh optimisers and targets copied from it: continued pretraining, e.g. with another discount.
    ``train_overrides`` replaces fields of the preset's train config (e.g. ``discount``).
    ``tensorboard`` also writes the metric rows as TensorBoard event files in ``run_dir``.
    """
    check_seed(seed)
    if tensorboard:
        tensorboard_writer_class()  # a missing package is refused before the dataset is read
    torch.set_num_threads(threads)
    algo = get_algorithm(algorithm)
    dataset = load_dataset(dataset_dir, resimulate=resimulate)
    overrides = dict(train_overrides or {})
    if num_updates is not None:
        overrides["num_updates"] = num_updates
    model_config, train_config = preset(algorithm, preset_name, dataset.obs_dim, dataset.action_dim, **overrides)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = algo.model(model_config)
    model.set_normalization(torch.from_numpy(dataset.obs.mean(0)), torch.from_numpy(dataset.obs.std(0)))
    step, wall_time = 0, 0.0
    if (run_dir / TRAINER_STATE).exists():
        model = _resumable_model(run_dir)
        if model.config != model_config:
            raise FastBFMError(f"{run_dir} holds a run with another model config; use a new folder")
        if "init_from" in model.meta:
            meta = {**(meta or {}), "init_from": model.meta["init_from"]}
        trainer = algo.trainer(model, train_config, generator)
        step, wall_time = _restore_checkpoint(run_dir, trainer)
    else:
        if init_from is not None:
            model = _initial_model(init_from, model_config)
            meta = {**(meta or {}), "init_from": {"checkpoint": str(init_from), "updates": model.meta.get("updates")}}
        trainer = algo.trainer(model, train_config, generator)
    meta = {
        "domain": domain_for_dims(dataset.obs_dim, dataset.action_dim),
        "algorithm": algorithm,
        "preset": preset_name,
        "seed": seed,
        "dataset": str(dataset_dir),
        "dataset_transitions": len(dataset),
        "train": asdict(train_config),
        **(meta or {}),
    }
    data = dataset.to_torch()
    sums: dict[str, float] = defaultdict(float)
    bar = tqdm(total=train_config.num_updates, initial=step, desc=f"pretrain {algorithm}", unit="upd", disable=not progress)
    start = time.perf_counter() - wall_time
    if step and step >= train_config.num_updates:
        _save_checkpoint(run_dir, trainer, step, wall_time, meta)  # nothing to train: repair the model files
    with open_metrics_log(run_dir, tensorboard, resume_step=step) as log:
        while step < train_config.num_updates:
            metrics = trainer.update(trainer.sample_batch(data))
            step += 1
            bad = [k for k, v in metrics.items() if not math.isfinite(v)]
            if bad:
                raise FastBFMError(
                    f"training diverged at update {step}: non-finite {', '.join(bad)}; "
                    f"the last good checkpoint in {run_dir} is kept"
                )
            for k, v in metrics.items():
                sums[k] += v
            bar.update(1)
            if step % log_every == 0 or step == train_config.num_updates:
                n = (step - 1) % log_every + 1
                row = {"step": step, "time_s": round(time.perf_counter() - start, 2), **{k: v / n for k, v in sums.items()}}
                log.write(row)
                bar.set_postfix(q=f"{row['actor_q']:.3g}")
                sums.clear()
            if step % checkpoint_every == 0 or step == train_config.num_updates:
                _save_checkpoint(run_dir, trainer, step, time.perf_counter() - start, meta)
    bar.close()
    return run_dir
