"""Run folders: what ``fastbfm adapt --out`` and ``fastbfm demo`` write and ``fastbfm report`` reads.

A run folder holds ``results.json`` (the command's JSON payload: ``model`` and a list of ``results``,
one per task and method, with each seed's curve and final latent ``z``), ``curves.csv`` (the same
curves, one row per task, method, seed and budget) and optionally ``videos/`` (GIF or MP4).
"""

from __future__ import annotations

from pathlib import Path

from fastbfm.adapt.methods import DEFAULT_METHOD
from fastbfm.errors import FastBFMError
from fastbfm.io import read_json, write_csv, write_json
from fastbfm.schemas import RunResultsFile, validate

RESULTS = "results.json"
CURVES = "curves.csv"
VIDEOS = "videos"
CURVE_COLUMNS = ("task", "method", "seed", "episodes", "return")


def video_name(result: dict, suffix: str = ".gif") -> str:
    """A file name per task and method, e.g. ``point_mass_maze-reach_top_left-<method>.gif``."""
    stem = f"{result['task']}-{result_method(result)}".replace(":", "-")
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in stem) + suffix


def result_method(result: dict) -> str:
    """The method of a result (results written before results named theirs are LoLA's)."""
    return result.get("method", DEFAULT_METHOD)


def curve_rows(results: list[dict]) -> list[dict]:
    """One tidy row per (task, method, seed, episodes): the evaluation return after that budget."""
    rows = []
    for r in results:
        seeds = r.get("seeds") or list(range(len(r["curves"])))
        for seed, curve in zip(seeds, r["curves"]):
            for episodes, value in zip(r["episodes"], curve):
                rows.append({"task": r["task"], "method": result_method(r), "seed": seed, "episodes": episodes, "return": value})
    return rows


def write_run(out: str | Path, payload: dict) -> dict[str, Path]:
    """Write ``payload`` (``{"model": ..., "results": [...], ...}``) as ``results.json`` and ``curves.csv``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / RESULTS, payload)
    write_csv(out / CURVES, CURVE_COLUMNS, curve_rows(payload["results"]))
    return {"results": out / RESULTS, "curves": out / CURVES}


def results_path(path: str | Path) -> Path:
    """``path`` itself if it is a file, else the ``results.json`` of the run folder ``path``."""
    path = Path(path)
    if path.is_dir():
        path = path / RESULTS
    if not path.is_file():
        raise FastBFMError(f"no results at '{path}': give a run folder of `fastbfm adapt --out` / `fastbfm demo` or its results.json")
    return path


def _run_schema(payload, path: Path) -> dict:
    results = payload.get("results") if isinstance(payload, dict) else None
    if not isinstance(results, list) or not results:
        raise FastBFMError(f"'{path}' has no 'results' list (expected the output of `fastbfm adapt --out` or `fastbfm demo`)")
    return validate(path, payload, RunResultsFile, "corrupt results")


def load_run(path: str | Path) -> dict:
    """Read and check a run's ``results.json`` (``path``: the file or its folder)."""
    return read_json(results_path(path), _run_schema, what="run results")


def check_same_model(run: dict, model: str, where: str | Path) -> None:
    """The model about to render a run's latents is the one it adapted: the digest of its weights, which
    ``adapt --out`` records in results.json, must match (a path may hold another model since)."""
    recorded = run.get("model_digest")
    if recorded is None:
        return
    from fastbfm.models import model_digest

    now = model_digest(model)
    if now != recorded:
        raise FastBFMError(f"{where} was adapted with other weights than {model} holds now (digest {recorded[:16]}... then, "
                           f"{now[:16]}... now): its latents mean nothing to that model")  # fmt: skip


def pick_result(payload: dict, task: str | None, method: str | None = None) -> dict:
    """The one result of ``task`` (and ``method``); either may be left out when only one result fits."""
    fits = [r for r in payload["results"] if (task is None or r["task"] == task) and (method is None or result_method(r) == method)]
    if len(fits) == 1:
        return fits[0]
    have = ", ".join(f"{r['task']} ({result_method(r)})" for r in payload["results"])
    if not fits:
        raise FastBFMError(f"the results hold no {task or ''} {method or ''}".rstrip() + f"; they hold: {have}")
    raise FastBFMError(f"the results hold several runs; choose with --task (and --method): {have}")


def has_latents(result: dict) -> bool:
    """Whether the result stores a final latent per seed (finetuning and per-state latents do not)."""
    return any(z is not None for z in result.get("z") or [])


def adapted_latent(result: dict, seed: int | None = None) -> tuple[int, list[float]]:
    """The final latent of adaptation seed ``seed`` (default: the first seed) as (seed, z)."""
    latents = result.get("z")
    if not latents:
        raise FastBFMError(
            f"the results of {result['task']} hold no adapted latents (written by an older fastbfm); "
            "rerun `fastbfm adapt --out RUN_DIR` or `fastbfm demo`"
        )
    if all(z is None for z in latents):
        raise FastBFMError(
            f"{result_method(result)} on {result['task']} adapts no single latent (it changes the networks or "
            "a latent per state), so its policy cannot be replayed from results.json"
        )
    seeds = result.get("seeds") or list(range(len(latents)))
    if seed is None:
        seed = seeds[0]
    if seed not in seeds:
        raise FastBFMError(f"no adaptation seed {seed} in the results of {result['task']}; seeds: {', '.join(map(str, seeds))}")
    return seed, latents[seeds.index(seed)]
