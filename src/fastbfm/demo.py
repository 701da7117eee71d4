"""The README's main job: the shipped maze FB model, zero-shot against LoLA on the four maze tasks."""

from __future__ import annotations

import time
from pathlib import Path

from fastbfm.adapt.lola import LoLAConfig
from fastbfm.adapt.safe import SafeConfig
from fastbfm.data import ensure_dataset
from fastbfm.envs import get_task, list_tasks
from fastbfm.evaluate.experiments import adapt
from fastbfm.models import load_model
from fastbfm.report.plots import plot_adaptation_curves
from fastbfm.report.run import write_run
from fastbfm.zoo import ZOO_DIR

MODEL = "maze-fb"
DOMAIN = "point_mass_maze"


def _model(progress: bool):
    folder = ZOO_DIR / MODEL
    if (folder / "config.json").is_file():
        return load_model(folder)
    # No shipped checkpoint (e.g. deleted): train a small one so the demo still runs end to end.
    from fastbfm.bfm.train import pretrain

    run = Path("runs") / MODEL
    pretrain(Path("data") / DOMAIN / "explore", run, "cpu", num_updates=20_000, progress=progress)
    return load_model(run)


def run_demo(out: str | Path = "demo_out", episodes: int = 20, seeds: int = 3, progress: bool = True) -> dict:
    start = time.perf_counter()
    out = Path(out)
    dataset = ensure_dataset(DOMAIN, progress=progress)
    model = _model(progress)
    # safe deployment (the default) when the budget pays for its duels; a smaller budget runs ungated (lola-unsafe)
    config = LoLAConfig(episodes=episodes) if episodes > SafeConfig().cost() else LoLAConfig(episodes=episodes, safe=None)
    results = [adapt(model, get_task(name), dataset, config, list(range(seeds)), progress=progress) for name in list_tasks(DOMAIN)]
    plot = plot_adaptation_curves(
        {r["task"]: [(r["episodes"], c) for c in r["curves"]] for r in results},
        out / "adaptation_curves.png",
        title=f"{MODEL}: LoLA from zero-shot ({seeds} seeds)",
    )
    payload = {"model": MODEL, "results": results, "plot": str(plot), "wall_time_s": round(time.perf_counter() - start, 1)}
    write_run(out, payload)
    return payload
