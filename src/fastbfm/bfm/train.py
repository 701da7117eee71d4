"""Pretraining with periodic checkpoints, exact resume and a JSONL metrics log.

A run folder holds the model (``model.safetensors`` + ``config.json``, loadable by ``load_model``),
the trainer state (``trainer-<step>.safetensors`` + ``trainer.json``: targets, optimisers, RNG, step,
the metric sums of the current log interval, the run's options and its history) and ``metrics.jsonl``.

Resume rules (README, "What fastbfm guarantees"): running the same command again continues from the
last checkpoint; options that would change the run (algorithm, preset and sizes, seed, dataset,
discount and every other training option, learning rates unless ``allow_new_lr``) are refused with
the list of differences; how it runs (device, precision, threads, CUDA graphs, learning rates when
allowed) may change and each change opens a new segment in the run's history. The metrics log is
cut back to the checkpoint on resume, and the checkpoint holds the sums of the interval in progress,
so the resumed log equals an uninterrupted run's row for row. A lock file stops a second writer.
"""

from __future__ import annotations

import json
import math
import time
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
from fastbfm.bfm.device import default_bf16, device_name, resolve_device, set_matmul_precision
from fastbfm.bfm.step import MetricSums, make_step, set_training_precision
from fastbfm.bfm.metrics_log import METRICS_FILE, open_metrics_log, tensorboard_writer_class
from fastbfm.data.dataset import load_dataset
from fastbfm.envs.registry import domain_for_dims
from fastbfm.errors import FastBFMError
from fastbfm.locks import folder_lock
from fastbfm.schemas import ModelConfigFile, TrainerStateFile, check_seed

TRAINER_WEIGHTS, TRAINER_STATE = "trainer.safetensors", "trainer.json"
# Options that define a run: a resume must keep them (learning rates may change with allow_new_lr).
LEARNING_RATES = ("lr_f", "lr_b", "lr_actor", "lr_sf", "lr_phi", "lr_proto")
NOT_RUN_DEFINING = ("num_updates",)



def _run_options(algorithm, preset_name, seed, dataset_dir, dataset, model_config, train_config, log_every, init_from, resimulate) -> dict:
    """What makes a run this run: changing any of it changes what the weights mean."""
    return {
        "algorithm": algorithm,
        "preset": preset_name,
        "model": asdict(model_config),
        "train": {k: v for k, v in asdict(train_config).items() if k not in NOT_RUN_DEFINING},
        "seed": seed,
        "dataset": str(Path(dataset_dir).resolve()),
        "dataset_transitions": len(dataset),
        "dataset_digest": dataset.digest,
        "resimulate": resimulate,
        "log_every": log_every,
        "init_from": None if init_from is None else str(init_from),
    }


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _recorded_options(state: dict, config: dict) -> dict:
    """The run's options from its trainer.json; a run written before they were recorded gives what its
    files hold (algorithm, preset, seed, dataset, train config)."""
    if "run" in state:
        return state["run"]
    meta = config.get("meta", {}) if isinstance(config, dict) else {}
    train = state.get("train", {})
    old = {"train": {k: v for k, v in train.items() if k not in NOT_RUN_DEFINING}}
    for key in ("algorithm", "preset", "seed"):
        if key in meta:
            old[key] = meta[key]
    if "dataset" in meta:
        old["dataset"] = str(Path(meta["dataset"]).resolve())
    return old


def _differences(recorded: dict, wanted: dict) -> tuple[list[str], list[str]]:
    """(learning-rate differences, other differences) between the recorded options and the wanted ones."""
    old, new = _flatten(recorded), _flatten(wanted)
    lrs, others = [], []
    for key in old:
        if key in new and old[key] != new[key]:
            change = f"{key} {old[key]!r} -> {new[key]!r}"
            (lrs if key.split(".")[-1] in LEARNING_RATES else others).append(change)
    return lrs, others


def _segment(step: int, device: torch.device, train_config, precision: str, graphs: bool) -> dict:
    """How a stretch of the run was executed; a resume that changes any of it opens a new segment."""
    return {
        "from_step": step,
        "device": device_name(device) if device.type == "cuda" else "cpu",
        "precision": precision,
        "cuda_graphs": graphs,
        "learning_rates": {k: v for k, v in asdict(train_config).items() if k in LEARNING_RATES},
    }


def _same_segment(a: dict, b: dict) -> bool:
    return {k: v for k, v in a.items() if k != "from_step"} == {k: v for k, v in b.items() if k != "from_step"}


def _save_checkpoint(run_dir: Path, trainer, step: int, wall_time: float, meta: dict, sums: MetricSums, run: dict, history: list) -> None:
    tensors = {f"{name}.{k}": v for name, module in trainer.modules().items() for k, v in module.state_dict().items()}
    groups = {}
    for name, opt in trainer.optimizers().items():
        opt_tensors, groups[name] = optimizer_tensors(name, opt)
        tensors.update(opt_tensors)
    tensors["rng"] = trainer.generator.get_state()
    tensors.update({f"model.{k}": v for k, v in trainer.model.state_dict().items()})
    sum_tensors, metric_names = sums.state()
    tensors.update(sum_tensors)
    # A new weights file per checkpoint, named by trainer.json (the commit, written last): a kill at any
    # moment leaves trainer.json naming a complete file, so a resume never meets a torn checkpoint.
    weights = f"trainer-{step:09d}.safetensors"
    digest = save_tensors(run_dir / weights, tensors)
    save_model(trainer.model, run_dir, meta={**meta, "updates": step, "wall_time_s": round(wall_time, 1), "history": history})
    write_json(
        run_dir / TRAINER_STATE,
        {
            "format_version": FORMAT_VERSION,
            "step": step,
            "wall_time_s": wall_time,
            "train": asdict(trainer.config),
            "run": run,
            "history": history,
            "rng_device": trainer.generator.device.type,
            "metric_names": metric_names,
            "optimizers": groups,
            "weights": weights,
            "sha256": {weights: digest},
        },
    )
    for old in run_dir.glob("trainer*.safetensors"):
        if old.name != weights:
            old.unlink()


def _restore_checkpoint(run_dir: Path, trainer, state: dict, sums: MetricSums, seed: int, new_lr: bool) -> tuple[int, float]:
    weights = state.get("weights", TRAINER_WEIGHTS)
    tensors = load_tensors(run_dir / weights, state["sha256"][weights])
    device = trainer.device
    if any(k.startswith("model.") for k in tensors):
        trainer.model.load_state_dict({k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")})
    for name, module in trainer.modules().items():
        prefix = f"{name}."
        module.load_state_dict({k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)})
    for name, opt in trainer.optimizers().items():
        wanted_lrs = [g["lr"] for g in opt.param_groups]
        restore_optimizer(name, opt, tensors, state["optimizers"][name])
        if new_lr:
            for group, lr in zip(opt.param_groups, wanted_lrs):
                group["lr"] = lr
    step = int(state["step"])
    if state.get("rng_device", "cpu") == trainer.generator.device.type:
        trainer.generator.set_state(tensors["rng"])
    else:  # another kind of generator: reseeded from (seed, step), the new segment records the device
        trainer.generator.manual_seed(seed * 1_000_003 + step)
    sums.load({k: v.to(device) for k, v in tensors.items() if k.startswith("metrics.")}, state.get("metric_names", []))
    for tmp in run_dir.glob("*.tmp"):  # left by a write that was killed
        tmp.unlink()
    return step, float(state["wall_time_s"])


def _truncate_metrics(path: Path, step: int) -> None:
    """Keep only rows logged up to the checkpoint (a row after it, or one cut short by a kill, is logged
    again); with no checkpoint (step 0) the log starts empty."""
    rows = []
    if path.is_file():
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
    device: str | torch.device = "auto",
    max_minutes: float | None = None,
    tf32: bool = True,
    bf16: bool | None = None,
    cuda_graphs: bool | None = None,
    allow_new_lr: bool = False,
    tensorboard: bool = False,
) -> Path:
    """Train a BFM (``algorithm``: fb, hilp or psm) on a reward-free dataset; resumes if ``run_dir``
    holds a checkpoint (see the module's resume rules).

    ``init_from`` starts a new run from the weights (and input normalisation) of a model checkpoint,
    with fresh optimisers and targets copied from it: continued pretraining, e.g. with another discount.
    ``train_overrides`` replaces fields of the preset's train config (e.g. ``discount``).
    ``device``: auto (CUDA when available), cpu or cuda; the dataset, the model and batch sampling all
    live there. ``max_minutes`` stops after that much wall time with a checkpoint (rerun to continue).
    ``bf16``: the networks run in bf16 (float32 master weights, optimiser state and losses); None (the
    default) turns it on where it is native and pays (a CPU with AVX512_BF16 or AMX, networks at least 512
    wide: ``default_bf16``).
    On CUDA: ``tf32`` matmuls (default on) and ``cuda_graphs`` (default on) capture the whole step once
    and replay it.
    ``tensorboard`` also writes the metric rows as TensorBoard event files in ``run_dir``.
    """
    check_seed(seed)
    if tensorboard:
        tensorboard_writer_class()  # a missing package is refused before the dataset is read
    torch.set_num_threads(threads)
    device = resolve_device(device)
    cuda_graphs = cuda_graphs is not False and device.type == "cuda"
    set_matmul_precision(device, tf32)
    algo = get_algorithm(algorithm)
    # the lock first: a second writer is refused before it spends a minute loading the data
    run_dir = Path(run_dir)
    with folder_lock(run_dir, "pretrain"):
        dataset = load_dataset(dataset_dir, resimulate=resimulate)
        overrides = dict(train_overrides or {})
        if num_updates is not None:
            overrides["num_updates"] = num_updates
        model_config, train_config = preset(algorithm, preset_name, dataset.obs_dim, dataset.action_dim, **overrides)
        return _pretrain_locked(
            dataset, dataset_dir, run_dir, algo, model_config, train_config, preset_name, seed, checkpoint_every, log_every,
            progress, meta, init_from, resimulate, device, max_minutes, tf32, bf16, cuda_graphs, allow_new_lr, tensorboard,
        )  # fmt: skip


def _pretrain_locked(
    dataset, dataset_dir, run_dir, algo, model_config, train_config, preset_name, seed, checkpoint_every, log_every,
    progress, meta, init_from, resimulate, device, max_minutes, tf32, bf16, cuda_graphs, allow_new_lr, tensorboard,
) -> Path:  # fmt: skip
    algorithm = algo.name
    torch.manual_seed(seed)
    generator = torch.Generator(device).manual_seed(seed)
    model = algo.model(model_config)
    model.set_normalization(torch.from_numpy(dataset.obs.mean(0)), torch.from_numpy(dataset.obs.std(0)))
    sums = MetricSums(device)
    step, wall_time, history = 0, 0.0, []
    resuming = (run_dir / TRAINER_STATE).exists()
    if resuming:
        state = read_json(run_dir / TRAINER_STATE, TrainerStateFile)
        recorded = _recorded_options(state, _read_config(run_dir))
        if init_from is None and recorded.get("init_from") is not None:
            init_from = recorded["init_from"]
        run = _run_options(algorithm, preset_name, seed, dataset_dir, dataset, model_config, train_config, log_every, init_from, resimulate)
        if recorded.get("dataset_digest") not in (None, run["dataset_digest"]):
            raise FastBFMError(
                f"{run_dir} was trained on other data than {dataset_dir} holds now (dataset digest "
                f"{recorded['dataset_digest'][:16]}... then, {run['dataset_digest'][:16]}... now); "
                "resume on the data it was trained on, or use a new folder"
            )
        lr_changes, changes = _differences(recorded, run)
        if changes or (lr_changes and not allow_new_lr):
            hint = "" if changes else " (--allow-new-lr continues with the new learning rates)"
            raise FastBFMError(
                f"{run_dir} holds a run with other options: {'; '.join(changes + lr_changes)}; "
                f"rerun with the run's options to resume, or use a new folder{hint}"
            )
        model = _resumable_model(run_dir)
        if model.config != model_config:
            raise FastBFMError(f"{run_dir} holds a run with another model config; use a new folder")
        if "init_from" in model.meta:
            meta = {**(meta or {}), "init_from": model.meta["init_from"]}
        history = list(state.get("history", []))
        trainer = algo.trainer(model.to(device), train_config, generator)
        step, wall_time = _restore_checkpoint(run_dir, trainer, state, sums, seed, new_lr=bool(lr_changes))
    else:
        if init_from is not None:
            model = _initial_model(init_from, model_config)
            meta = {**(meta or {}), "init_from": {"checkpoint": str(init_from), "updates": model.meta.get("updates")}}
        run = _run_options(algorithm, preset_name, seed, dataset_dir, dataset, model_config, train_config, log_every, init_from, resimulate)
        trainer = algo.trainer(model.to(device), train_config, generator)
    _truncate_metrics(run_dir / METRICS_FILE, step)
    if bf16 is None and history and history[-1].get("device") == (device_name(device) if device.type == "cuda" else "cpu"):
        # a resumed run keeps the precision it was trained in (another machine's default must not switch it)
        bf16 = str(history[-1].get("precision", "")).startswith("bf16")
    if bf16 is None:
        bf16 = default_bf16(device, model_config.hidden_dim)
    precision = "bf16" if bf16 else ("tf32" if tf32 and device.type == "cuda" else "fp32")
    segment = _segment(step, device, train_config, precision, cuda_graphs)
    if not history or not _same_segment(history[-1], segment):
        history.append(segment)
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
    data = dataset.to_torch(device)
    set_training_precision(trainer, bf16)
    run_step = make_step(trainer, data, sums, graphs=cuda_graphs)

    def checkpoint(at: int) -> None:
        _save_checkpoint(run_dir, trainer, at, time.perf_counter() - start, meta, sums, run, history)

    def check_finite(at: int) -> dict[str, float]:
        count, first_bad, means = sums.read()
        if first_bad:
            bad = [k for k, v in means.items() if not math.isfinite(v)]
            kept = (
                f"the last good checkpoint in {run_dir} (update {read_json(run_dir / TRAINER_STATE)['step']}) is kept"
                if (run_dir / TRAINER_STATE).is_file() else f"no checkpoint was written (the first is due at update {checkpoint_every})"
            )  # fmt: skip
            raise FastBFMError(f"training diverged at update {at - count + first_bad}: non-finite {', '.join(bad) or 'metrics'}; {kept}")
        return means

    bar = tqdm(total=train_config.num_updates, initial=step, desc=f"pretrain {algorithm}", unit="upd", disable=not progress)
    start = time.perf_counter() - wall_time
    deadline = None if max_minutes is None else time.perf_counter() + 60 * max_minutes
    if step and step >= train_config.num_updates:
        checkpoint(step)  # nothing to train: repair the model files
    with open_metrics_log(run_dir, tensorboard, resume_step=step) as log:
        while step < train_config.num_updates:
            run_step()
            step += 1
            bar.update(1)
            if step % log_every == 0 or step == train_config.num_updates:
                means = check_finite(step)
                row = {"step": step, "time_s": round(time.perf_counter() - start, 2), **means}
                log.write(row)
                bar.set_postfix(q=f"{row.get('actor_q', float('nan')):.3g}")
                sums.reset()
            out_of_time = deadline is not None and time.perf_counter() >= deadline
            if step % checkpoint_every == 0 or step == train_config.num_updates or out_of_time:
                check_finite(step)
                checkpoint(step)
            if out_of_time:
                break
    bar.close()
    return run_dir


def _read_config(run_dir: Path) -> dict:
    try:
        return read_json(run_dir / "config.json")
    except FastBFMError:
        return {}
