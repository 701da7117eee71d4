"""Experiment grids: models x tasks x methods x seeds, one process per cell, resumable.

Each finished cell is written atomically as ``cells/<model>__<task>__<method>__seed<k>.json``; running
the same grid again skips the cells already there, so an interrupted grid (even by ``kill -9``) loses at
most the cells in flight. When all cells are done the grid writes ``results.csv`` (tidy: one row per
model, task, method, seed and budget) and ``results.json`` (the run format ``fastbfm report`` reads),
from every cell in the folder: a later run that adds a method (or names fewer) keeps the others' rows.
``grid.json`` keeps the budget and ``models.json`` the digest of each model's weights: a rerun with
another budget, or whose model name now holds other weights, is refused rather than mixed.
Cells run on a local process pool, or as Ray tasks on a cluster given its address (``pip install ray``).
"""

from __future__ import annotations

import functools
import json
import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm.auto import tqdm

from fastbfm.adapt import methods as registry
from fastbfm.adapt.methods import ORACLE, ZERO_SHOT, MethodOptions
from fastbfm.errors import FastBFMError
from fastbfm.io import read_json, write_csv, write_json
from fastbfm.locks import folder_lock
from fastbfm.schemas import GridBudgetFile, GridCellFile, GridModelsFile, check_seed, checker


def grid_methods() -> list[str]:
    """The registered methods and the two yardsticks: ``zero-shot``, and ``oracle`` (``fastbfm headroom``:
    the best of 256 latents on the seed's evaluation episodes)."""
    return [ZERO_SHOT, *registry.names(), ORACLE]


MODELS_FILE = "models.json"
TIDY_COLUMNS = ("model", "task", "method", "seed", "budget_episodes", "episodes", "return", "compute_s_per_episode", "sim_s_per_episode")
EPISODE_COLUMNS = ("model", "task", "method", "seed", "episodes", "start", "return")
"""``episodes.csv``: the return of every evaluation episode (start: its index among the seed's fixed start
states), so that a point pairs with zero-shot on the same start states (``fastbfm summarize``'s dip test)."""


@dataclass(frozen=True)
class GridCell:
    model: str
    task: str
    method: str
    seed: int

    @property
    def file_name(self) -> str:
        safe = lambda s: "".join(c if c.isalnum() or c in "-_." else "-" for c in s)  # noqa: E731
        return f"{safe(self.model)}__{safe(self.task)}__{self.method}__seed{self.seed}.json"


def method_config(method: str, episodes: int, eval_episodes: int, eval_every: float = 0.0):
    """The default config of an adaptation method with the grid's budget and evaluation schedule."""
    return registry.get_method(method).build(MethodOptions(episodes=episodes, eval_episodes=eval_episodes, eval_every=eval_every))


def grid_cells(models: list[str], tasks: list[str], methods: list[str], seeds: list[int]) -> list[GridCell]:
    """Every (model, task, method, seed) whose task is in the model's domain; checks names up front."""
    from fastbfm.envs import get_task
    from fastbfm.models import model_domain

    for method in methods:
        if method not in grid_methods():
            raise FastBFMError(f"unknown method '{method}' for a grid; methods: {', '.join(grid_methods())}")
    if not (models and tasks and methods and seeds):
        raise FastBFMError("a grid needs at least one model, task, method and seed")
    for seed in seeds:
        check_seed(seed)
    domains = {m: model_domain(m) for m in models}
    cells = [
        GridCell(m, get_task(t).full_name, method, s)
        for m in models
        for t in tasks
        if get_task(t).domain == domains[m]
        for method in methods
        for s in seeds
    ]
    if not cells:
        raise FastBFMError(f"no task fits the models' domains ({', '.join(sorted(set(map(str, domains.values()))))})")
    return cells


def run_cell(cell: GridCell, episodes: int, eval_episodes: int, eval_every: float = 0.0, plugins: tuple = (),
             discount: float | None = None, device: str = "cpu") -> dict:
    """Run one cell in this process; returns what its JSON file holds (the caller writes it, so Ray
    workers need no shared filesystem). ``plugins``: the methods the caller registered at run time;
    ``discount``: for models that record none (Meta Motivo's); ``device``: where the cell's model runs
    (``auto``: this worker's CUDA device when it has one)."""
    import torch

    from fastbfm.bfm.device import resolve_device
    from fastbfm.bfm.placement import place
    from fastbfm.envs import get_task
    from fastbfm.evaluate.experiments import adapt, zero_shot
    from fastbfm.models import load_model

    torch.set_num_threads(1)
    for method in plugins:
        registry.register(method)
    model = place(load_model(cell.model, discount=discount), resolve_device(device))
    task = get_task(cell.task)
    dataset = _domain_dataset(task.domain)
    if cell.method == ZERO_SHOT:
        row = zero_shot(model, [task], dataset, episodes=eval_episodes, seed=cell.seed)[0]
        result = _point_result(cell, row["zero_shot"], row["zero_shot"])
    elif cell.method == ORACLE:
        from fastbfm.adapt.oracle import OracleConfig, headroom
        from fastbfm.adapt.zero_shot import infer_task

        found = headroom(model, task, infer_task(model, task, dataset), OracleConfig(eval_episodes=eval_episodes, seed=cell.seed))
        result = _point_result(cell, found.zero_shot, found.best)
    else:
        result = adapt(model, task, dataset, method_config(cell.method, episodes, eval_episodes, eval_every), [cell.seed])
    return {"format_version": 1, "cell": asdict(cell), "budget_episodes": episodes, "result": result}


def run_cells(cells: list[GridCell], episodes: int, eval_episodes: int, eval_every: float = 0.0, plugins: tuple = (),
              discount: float | None = None, device: str = "cpu") -> list[dict]:
    """Cells of one (model, task, method) that differ by seed, in one process with their seeds in lockstep
    (one batch of simulations); one payload per cell, each as :func:`run_cell` writes it."""
    if len(cells) == 1:
        return [run_cell(cells[0], episodes, eval_episodes, eval_every, plugins, discount, device)]
    import numpy as np
    import torch

    from fastbfm.envs import get_task
    from fastbfm.evaluate.experiments import adapt
    from fastbfm.bfm.device import resolve_device
    from fastbfm.bfm.placement import place
    from fastbfm.evaluate.paired import paired_curve
    from fastbfm.models import load_model

    torch.set_num_threads(1)
    for method in plugins:
        registry.register(method)
    first = cells[0]
    task = get_task(first.task)
    together = adapt(place(load_model(first.model, discount=discount), resolve_device(device)), task, _domain_dataset(task.domain),
                     method_config(first.method, episodes, eval_episodes, eval_every), [c.seed for c in cells])
    payloads = []
    for i, cell in enumerate(cells):
        curve = together["curves"][i]
        change = (lambda v: 100 * (v - curve[0]) / abs(curve[0]) if curve[0] else None)  # noqa: E731
        result = {**together, "seeds": [cell.seed], "curves": [curve], "zero_shot": curve[0], "final": curve[-1], "final_std": 0.0,
                  "change_pct": change(curve[-1]), "lowest": min(curve), "lowest_vs_zero_shot_pct": change(min(curve)),
                  "z": [together["z"][i]], "episode_returns": [together["episode_returns"][i]], "latents": [together["latents"][i]],
                  "paired": paired_curve(np.array([together["episode_returns"][i]]))}
        payloads.append({"format_version": 1, "cell": asdict(cell), "budget_episodes": episodes, "result": result,
                         "lockstep_seeds": [c.seed for c in cells]})
    return payloads


@functools.lru_cache(maxsize=1)
def _domain_dataset(domain: str):
    """A worker keeps the last domain's dataset: cells come grouped by model, and loading one takes a minute."""
    from fastbfm.data import load_default_dataset

    return load_default_dataset(domain)


def _point_result(cell: GridCell, zero_shot: float, value: float) -> dict:
    """A method without a budget axis (zero-shot, the oracle): one point at 0 episodes."""
    return {"task": cell.task, "method": cell.method, "seeds": [cell.seed], "zero_shot": zero_shot, "final": value,
            "episodes": [0.0], "curves": [[value]], "compute_s_per_episode": 0.0, "sim_s_per_episode": 0.0}


def _tidy_rows(cells: list[dict]) -> list[dict]:
    rows = []
    for c in cells:
        r = c["result"]
        for episodes, value in zip(r["episodes"], r["curves"][0]):
            rows.append({"model": c["cell"]["model"], "task": r["task"], "method": r["method"], "seed": c["cell"]["seed"],
                         "budget_episodes": c["budget_episodes"], "episodes": episodes, "return": value, "compute_s_per_episode": r.get("compute_s_per_episode"),
                         "sim_s_per_episode": r.get("sim_s_per_episode")})
    return rows


def _episode_rows(cells: list[dict]) -> list[dict]:
    rows = []
    for c in cells:
        r = c["result"]
        for episodes, returns in zip(r["episodes"], (r.get("episode_returns") or [[]])[0]):
            rows += [{"model": c["cell"]["model"], "task": r["task"], "method": r["method"], "seed": c["cell"]["seed"],
                      "episodes": episodes, "start": j, "return": value} for j, value in enumerate(returns)]
    return rows


def _merge_seeds(cells: list[dict]) -> list[dict]:
    """One result per (model, task, method) with all its seeds, in the format of ``fastbfm adapt``'s."""
    groups: dict[tuple, list[dict]] = {}
    for c in cells:
        groups.setdefault((c["cell"]["model"], c["result"]["task"], c["result"]["method"]), []).append(c)
    merged = []
    for (model, task, method), group in groups.items():
        group.sort(key=lambda c: c["cell"]["seed"])
        results = [c["result"] for c in group]
        curves = [r["curves"][0] for r in results]
        finals = [curve[-1] for curve in curves]
        zero = sum(r["zero_shot"] for r in results) / len(results)
        final = sum(finals) / len(finals)
        mean_curve = [sum(v) / len(v) for v in zip(*curves)]
        merged.append({
            "model": model, "task": task, "method": method, "seeds": [c["cell"]["seed"] for c in group],
            "zero_shot": zero, "final": final, "change_pct": 100 * (final - zero) / abs(zero) if zero else None,
            "lowest": min(mean_curve), "episodes": results[0]["episodes"], "curves": curves,
            "z": [(r.get("z") or [None])[0] for r in results],
            "z_zero_shot": results[0].get("z_zero_shot"),
            "latents": [(r.get("latents") or [None])[0] for r in results],
            "episode_returns": [(r.get("episode_returns") or [None])[0] for r in results],
            "compute_s_per_episode": sum(r.get("compute_s_per_episode") or 0 for r in results) / len(results),
            "sim_s_per_episode": sum(r.get("sim_s_per_episode") or 0 for r in results) / len(results),
        })
    return merged


def run_grid(
    out: str | Path,
    models: list[str],
    tasks: list[str],
    methods: list[str],
    seeds: list[int],
    episodes: int = 20,
    eval_episodes: int = 10,
    eval_every: float = 0.0,
    workers: int = 2,
    ray_address: str | None = None,
    progress: bool = True,
    discount: float | None = None,
    device: str = "cpu",
    lockstep: bool = False,
) -> dict:
    """``discount``: the training discount of models that record none (Meta Motivo's). ``device``: where
    each cell's model runs, resolved in the worker (results do not depend on it beyond float rounding,
    so it is not part of the grid's budget). ``lockstep``: the missing seeds of one (model, task, method)
    run in one process, their simulations in one batch (as ``fastbfm adapt --seeds N``; each seed equals
    its lone run up to float rounding across batch sizes), still written as one cell per seed."""
    from fastbfm.bfm.device import resolve_device

    resolve_device(device)  # refuse an unavailable device here, before any worker starts
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FastBFMError(f"--out {out} is a file, not a folder")
    cells = grid_cells(models, tasks, methods, seeds)
    _check_discounts(models, methods, discount)
    with folder_lock(out, "grid"):
        return _run_grid(out, cells, models, episodes, eval_episodes, eval_every, workers, ray_address, progress, discount, device, lockstep)


def _run_grid(out: Path, cells: list[GridCell], models: list[str], episodes: int, eval_episodes: int, eval_every: float,
              workers: int, ray_address: str | None, progress: bool, discount: float | None, device: str, lockstep: bool) -> dict:
    budget = {"episodes": episodes, "eval_episodes": eval_episodes, "eval_every": eval_every}
    _check_budget(out, budget if discount is None else {**budget, "discount": discount})
    _check_models(out, models)
    _check_cell_settings(out, cells, episodes, eval_episodes, eval_every)
    (out / "cells").mkdir(parents=True, exist_ok=True)
    todo = [c for c in cells if not (out / "cells" / c.file_name).is_file()]
    if todo and not ray_address:  # the workers only load the datasets: collecting one is said here, once
        from fastbfm.data import collect_default_dataset
        from fastbfm.envs import get_task

        for domain in sorted({get_task(c.task).domain for c in todo}):
            collect_default_dataset(domain, progress=progress)
    bar = tqdm(total=len(cells), initial=len(cells) - len(todo), desc="grid", unit="cell", disable=not progress)
    if todo and ray_address:
        _run_on_ray(todo, (episodes, eval_episodes, eval_every, registry.plugins(), discount, device), out, ray_address, bar)
    elif todo:
        context = multiprocessing.get_context("spawn")  # fresh interpreters: no forked torch or MuJoCo state
        groups: dict = {}
        for c in todo:
            together = lockstep and c.method not in (ZERO_SHOT, ORACLE)
            groups.setdefault((c.model, c.task, c.method) if together else c, []).append(c)
        with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_exit_with_parent, initargs=(os.getpid(),)) as pool:
            futures = {pool.submit(run_cells, group, episodes, eval_episodes, eval_every, registry.plugins(), discount, device): group
                       for group in groups.values()}
            for future in as_completed(futures):
                for cell, payload in zip(futures[future], future.result()):
                    write_json(out / "cells" / cell.file_name, payload)
                    bar.update(1)
    bar.close()
    # every cell of the folder, not only this run's: a rerun that names fewer methods keeps the others' rows
    done = [read_json(path, checker(GridCellFile, "corrupt grid cell"), what="grid cell") for path in sorted((out / "cells").glob("*.json"))]
    write_csv(out / "results.csv", TIDY_COLUMNS, _tidy_rows(done))
    if episode_rows := _episode_rows(done):
        write_csv(out / "episodes.csv", EPISODE_COLUMNS, episode_rows)
    results = _merge_seeds(done)
    in_folder = list(dict.fromkeys([*models, *sorted({c["cell"]["model"] for c in done})]))
    payload = {"model": in_folder[0] if len(in_folder) == 1 else None, "models": in_folder, "budget_episodes": episodes, "results": results}
    write_json(out / "results.json", {"format_version": 1, **payload})
    return {"out": str(out), "cells": len(cells), "ran": len(todo), "results": results}


def _check_discounts(models: list[str], methods: list[str], discount: float | None) -> None:
    """Up front, not in a worker an hour later: every model loads with ``discount``, and has one if a method adapts."""
    from fastbfm.models import load_model

    adapting = any(m in registry.METHODS for m in methods)
    for name in models:
        if load_model(name, discount=discount).discount is None and adapting:
            raise FastBFMError(f"{name} records no training discount, which adaptation bootstraps with: give --discount")


def _exit_with_parent(parent: int) -> None:
    """Pool initializer: when the grid is killed (even by SIGKILL) its workers exit too. Left alone they
    would wait forever on their task queue, each holding a model and a dataset in memory."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _check_budget(out: Path, budget: dict) -> None:
    """A grid folder holds cells of one budget: resuming with another would mix incomparable curves."""
    path = out / "grid.json"
    if path.is_file():
        kept = read_json(path, checker(GridBudgetFile, "corrupt grid budget"), what="grid budget")
        if kept != budget:
            raise FastBFMError(f"{out} holds a grid with budget {kept}; this run asks for {budget}: use another --out")
    else:
        out.mkdir(parents=True, exist_ok=True)
        write_json(path, budget)


def _check_cell_settings(out: Path, cells: list[GridCell], episodes: int, eval_episodes: int, eval_every: float) -> None:
    """Finished cells of a method whose settings changed since (a new default of this fastbfm) are
    refused, not mixed with new ones: each cell keeps the config it ran with."""
    wanted: dict[str, dict] = {}
    for cell in cells:
        path = out / "cells" / cell.file_name
        if cell.method in (ZERO_SHOT, ORACLE) or not path.is_file():
            continue
        if cell.method not in wanted:
            config = {k: v for k, v in asdict(method_config(cell.method, episodes, eval_episodes, eval_every)).items() if k != "seed"}
            wanted[cell.method] = json.loads(json.dumps(config))
        kept = read_json(path, checker(GridCellFile, "corrupt grid cell"), what="grid cell")["result"].get("config")
        if kept is not None and kept != wanted[cell.method]:
            changed = [f"{k} {kept.get(k)!r} -> {v!r}" for k, v in wanted[cell.method].items() if kept.get(k) != v]
            raise FastBFMError(f"{path} ran {cell.method} with other settings than this fastbfm's ({'; '.join(changed) or 'other fields'}): "
                               "use another --out, or rerun there with the fastbfm that wrote it")  # fmt: skip


def _check_models(out: Path, models: list[str]) -> None:
    """A grid folder holds the cells of one model per name: the digest of each model's weights is kept in
    models.json, and a rerun whose name now holds other weights is refused (its cells would be mixed)."""
    from fastbfm.models import model_digest

    path = out / MODELS_FILE
    kept = read_json(path, checker(GridModelsFile, "corrupt grid models"), what="grid models") if path.is_file() else {}
    now = {name: model_digest(name) for name in models}
    for name, digest in now.items():
        if kept.get(name, digest) != digest:
            raise FastBFMError(
                f"{out} holds cells of another model named {name} (weights {kept[name][:16]}..., now {digest[:16]}...); "
                "use another --out, or the model the grid was run with"
            )
    if any(name not in kept for name in now):
        write_json(path, {**kept, **now})


def _run_on_ray(todo: list[GridCell], budget: tuple, out: Path, address: str, bar) -> None:
    try:
        import ray
    except ImportError:
        raise FastBFMError("--ray-address needs Ray: pip install 'fastbfm[ray]'") from None
    ray.init(address=address, ignore_reinit_error=True)
    remote = ray.remote(num_cpus=1)(run_cell)
    pending = {remote.remote(c, *budget): c for c in todo}
    while pending:
        finished, _ = ray.wait(list(pending), num_returns=1)
        for ref in finished:
            write_json(out / "cells" / pending.pop(ref).file_name, ray.get(ref))
            bar.update(1)
