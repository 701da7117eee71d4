"""The ``fastbfm`` command line. Every command that prints results also takes ``--json``."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Optional

import typer

from fastbfm.adapt.lola import LoLAConfig
from fastbfm.errors import FastBFMError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Behavioral foundation models: collect reward-free data, pretrain, prompt zero-shot, fast-adapt.",
)

JSON_OPT = typer.Option(False, "--json", help="Print the results as one JSON object instead of a table.")
QUIET_OPT = typer.Option(False, "--quiet", "-q", help="No progress bars.")


def _emit(payload: dict, as_json: bool, table: str) -> None:
    typer.echo(json.dumps(payload, indent=2) if as_json else table)


def _fmt_table(header: list[str], rows: list[list]) -> str:
    cells = [header] + [[f"{c:.1f}" if isinstance(c, float) else ("-" if c is None else str(c)) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _load(model: str):
    from fastbfm.bfm.checkpoint import load_model
    from fastbfm.zoo import resolve_model

    return load_model(resolve_model(model))


def _tasks(names: list[str]):
    from fastbfm.envs import get_task

    return [get_task(n) for n in names]


@app.command()
def collect(
    out: Path = typer.Option(..., help="Folder for the episodes (ExORL layout, one .npz per episode)."),
    domain: str = typer.Option("point_mass_maze", help="Domain to explore."),
    episodes: int = typer.Option(1000, min=1, help="Number of 1000-step episodes."),
    num_envs: int = typer.Option(50, min=1, help="Simulations stepped together."),
    seed: int = typer.Option(0, help="Seed of the explorer."),
    as_json: bool = JSON_OPT,
    quiet: bool = QUIET_OPT,
):
    """Collect reward-free exploration data; rerun the same command to resume an interrupted collection."""
    from fastbfm.data.collect import CollectConfig, room_fractions
    from fastbfm.data.collect import collect as run_collect
    from fastbfm.data.dataset import load_dataset
    from fastbfm.envs import get_domain

    get_domain(domain)
    config = CollectConfig(domain=domain, episodes=episodes, num_envs=num_envs, seed=seed)
    run_collect(config, out, progress=not quiet)
    dataset = load_dataset(out)
    payload = {"out": str(out), "episodes": dataset.num_episodes, "transitions": len(dataset), "config": asdict(config)}
    table = f"{dataset.num_episodes} episodes, {len(dataset)} transitions in {out}"
    if domain == "point_mass_maze":
        fractions = room_fractions(dataset.next_obs)
        payload["room_fractions"] = fractions
        table += "\n" + _fmt_table(["room", "fraction of states"], [[k, f"{v:.3f}"] for k, v in fractions.items()])
    _emit(payload, as_json, table)


@app.command()
def pretrain(
    data: Path = typer.Option(..., help="Dataset folder (ExORL layout)."),
    out: Path = typer.Option(..., help="Run folder: checkpoints, metrics.jsonl. Rerun to resume."),
    preset: str = typer.Option("cpu", help="Named preset: 'cpu' (about an hour on 2 cores) or 'paper' (GPU scale)."),
    updates: Optional[int] = typer.Option(None, min=1, help="Number of gradient updates (default: the preset's)."),
    checkpoint_every: int = typer.Option(5000, min=1, help="Updates between checkpoints."),
    seed: int = typer.Option(0, help="Seed of initialisation, batches and latents."),
    threads: int = typer.Option(2, min=1, help="Torch threads."),
    as_json: bool = JSON_OPT,
    quiet: bool = QUIET_OPT,
):
    """Pretrain an FB model on a reward-free dataset (resumes from the run folder's last checkpoint)."""
    from fastbfm.bfm.checkpoint import read_json
    from fastbfm.bfm.train import pretrain as run_pretrain

    run_pretrain(data, out, preset, seed, updates, checkpoint_every, threads=threads, progress=not quiet)
    meta = read_json(out / "config.json")["meta"]
    payload = {"out": str(out), "updates": meta["updates"], "wall_time_s": meta["wall_time_s"], "preset": preset}
    _emit(payload, as_json, f"trained {meta['updates']} updates in {meta['wall_time_s']} s -> {out}")


@app.command("eval")
def eval_(
    model: str = typer.Option(..., help="Shipped model name (see `fastbfm models`) or checkpoint folder."),
    task: list[str] = typer.Option(..., help="Task as domain:task; repeat for several."),
    episodes: int = typer.Option(10, min=1, help="Evaluation episodes per task."),
    data: Optional[Path] = typer.Option(None, help="Dataset for reward inference (default: the domain's exploration data)."),
    samples: int = typer.Option(50_000, min=1, help="Labelled samples for reward inference."),
    goal: Optional[str] = typer.Option(
        None, help="Prompt with a goal observation instead of rewards, comma-separated (maze: x,y,vx,vy)."
    ),
    seed: int = typer.Option(0, help="Seed of the inference samples and the evaluation start states."),
    as_json: bool = JSON_OPT,
    quiet: bool = QUIET_OPT,
):
    """Zero-shot: infer each task's latent from labelled samples (or a goal) and evaluate it, beside a random policy."""
    from fastbfm.data import ensure_dataset
    from fastbfm.evaluate.experiments import zero_shot

    tasks = _tasks(task)
    bfm = _load(model)
    if len({t.domain for t in tasks}) > 1:
        raise FastBFMError("give tasks of one domain per call")
    goal_obs = None
    if goal is not None:
        try:
            goal_obs = [float(v) for v in goal.split(",")]
        except ValueError:
            raise FastBFMError(f"--goal takes comma-separated numbers, got '{goal}'") from None
    dataset = None if goal_obs is not None else ensure_dataset(tasks[0].domain, data, progress=not quiet)
    rows = zero_shot(bfm, tasks, dataset, episodes, samples, seed, goal=goal_obs)
    table = _fmt_table(
        ["task", "zero-shot", "std", "random", "std"],
        [[r["task"], r["zero_shot"], r["zero_shot_std"], r["random"], r["random_std"]] for r in rows],
    )
    _emit({"model": model, "results": rows}, as_json, table)


@app.command()
def adapt(
    model: str = typer.Option(..., help="Shipped model name or checkpoint folder."),
    task: list[str] = typer.Option(..., help="Task as domain:task; repeat for several."),
    method: str = typer.Option("lola", help="Adaptation method: lola."),
    episodes: int = typer.Option(LoLAConfig.episodes, min=0, help="Adaptation budget in episodes."),
    seeds: int = typer.Option(3, min=1, help="Number of seeds (first_seed..first_seed+seeds-1)."),
    first_seed: int = typer.Option(0, min=0, help="First seed; e.g. 100 to tune on seeds disjoint from reported ones."),
    candidates: int = typer.Option(LoLAConfig.num_candidates, min=2, help="LoLA: latents rolled out per iteration (k)."),
    horizon: int = typer.Option(LoLAConfig.horizon, min=1, help="LoLA: lookahead steps before bootstrapping (H)."),
    sigma: float = typer.Option(LoLAConfig.sigma, help="LoLA: latent perturbation std per coordinate."),
    lr: float = typer.Option(LoLAConfig.lr, help="LoLA: Adam step size on the latent mean."),
    eval_episodes: int = typer.Option(LoLAConfig.eval_episodes, min=1, help="Evaluation episodes after each adaptation step."),
    data: Optional[Path] = typer.Option(None, help="Dataset for the zero-shot start (default: the domain's exploration data)."),
    plot: Optional[Path] = typer.Option(None, help="Write the adaptation curves to this PNG."),
    as_json: bool = JSON_OPT,
    quiet: bool = QUIET_OPT,
):
    """Fast-adapt a frozen BFM to tasks by searching its latent space, starting from zero-shot."""
    from fastbfm.data import ensure_dataset
    from fastbfm.evaluate.experiments import adapt as run_adapt
    from fastbfm.report.plots import plot_adaptation_curves

    if method != "lola":
        raise FastBFMError(f"unknown method '{method}'; methods: lola")
    tasks = _tasks(task)
    bfm = _load(model)
    config = LoLAConfig(episodes=episodes, num_candidates=candidates, horizon=horizon, sigma=sigma, lr=lr, eval_episodes=eval_episodes)
    datasets = {domain: ensure_dataset(domain, data, progress=not quiet) for domain in {t.domain for t in tasks}}
    results = [run_adapt(bfm, t, datasets[t.domain], config, list(range(first_seed, first_seed + seeds)), progress=not quiet) for t in tasks]
    if plot:
        plot_adaptation_curves({r["task"]: [(r["episodes"], c) for c in r["curves"]] for r in results}, plot)
    _emit({"model": model, "results": results}, as_json, _adapt_table(results, episodes))


def _adapt_table(results: list[dict], episodes: int) -> str:
    return _fmt_table(
        ["task", "zero-shot", f"LoLA@{episodes}", "change %", "lowest", "lowest vs zs %"],
        [
            [r["task"], r["zero_shot"], r["final"], r["change_pct"], r["lowest"], r["lowest_vs_zero_shot_pct"]]
            for r in results
        ],
    )


@app.command()
def models(as_json: bool = JSON_OPT):
    """List the shipped models."""
    from fastbfm.bfm.checkpoint import read_json
    from fastbfm.zoo import ZOO_DIR, shipped_models

    rows = []
    for name in shipped_models():
        config = read_json(ZOO_DIR / name / "config.json")
        meta = config["meta"]
        rows.append({"name": name, "algorithm": config["algorithm"], "domain": meta.get("domain"), "updates": meta.get("updates")})
    _emit({"models": rows}, as_json, _fmt_table(["name", "algorithm", "domain", "updates"], [list(r.values()) for r in rows]))


@app.command()
def demo(
    out: Path = typer.Option(Path("demo_out"), help="Folder for the curves PNG and results JSON."),
    episodes: int = typer.Option(20, min=1, help="LoLA budget in episodes."),
    seeds: int = typer.Option(3, min=1, help="Seeds per task."),
    as_json: bool = JSON_OPT,
    quiet: bool = QUIET_OPT,
):
    """The shipped maze FB model: zero-shot against 20 LoLA episodes on the four maze tasks, with a PNG of the curves."""
    from fastbfm.demo import run_demo

    results = run_demo(out, episodes=episodes, seeds=seeds, progress=not quiet)
    table = _adapt_table(results["results"], episodes) + f"\n\ncurves: {results['plot']}"
    _emit(results, as_json, table)


def main() -> None:
    import torch

    # Rollouts call small networks once per step: one torch thread leaves the other core to MuJoCo
    # and avoids OpenMP spin-waits (pretrain sets its own thread count).
    torch.set_num_threads(1)
    try:
        app()
    except FastBFMError as e:
        typer.echo(f"error: {e}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
