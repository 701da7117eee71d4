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

RESIM_OPT = typer.Option(
    False, "--resimulate", help="Re-simulate --data's stored physics on this MuJoCo (for real ExORL folders, recorded by an older one)."
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


def _load(model: str, tasks=()):
    """Load a model and check that it fits every task before any data is touched."""
    from fastbfm.bfm.checkpoint import load_model
    from fastbfm.evaluate.experiments import check_compatible
    from fastbfm.zoo import resolve_model

    bfm = load_model(resolve_model(model))
    for task in tasks:
        check_compatible(bfm, task)
    return bfm


def _tasks(names: list[str]):
    from fastbfm.envs import get_task

    return [get_task(n) for n in names]


@app.command()
def collect(
    out: Path = typer.Option(..., help="Folder for the episodes (ExORL layout, one .npz per episode)."),
    domain: str = typer.Option("point_mass_maze", help="Domain to explore (see `fastbfm tasks`)."),
    episodes: Optional[int] = typer.Option(None, min=1, help="Number of episodes (default: the domain's recipe, 1M transitions)."),
    segment_length: Optional[int] = typer.Option(None, min=1, help="Steps per episode (default: the domain's recipe)."),
    num_envs: int = typer.Option(50, min=1, help="Simulations stepped together."),
    seed: int = typer.Option(0, help="Seed of the explorer."),
    as_json: bool = JSON_OPT,
    quiet: bool = QUIET_OPT,
):
    """Collect reward-free exploration data and write its dataset card (DATASET_CARD.md, coverage.png).

    Rerun the same command to resume an interrupted collection.
    """
    import time

    from fastbfm.data import default_collect_config
    from fastbfm.data.card import write_dataset_card
    from fastbfm.data.collect import collect as run_collect
    from fastbfm.data.dataset import load_dataset
    from fastbfm.envs import get_domain

    get_domain(domain)
    overrides = {"num_envs": num_envs, "seed": seed}
    if episodes is not None:
        overrides["episodes"] = episodes
    if segment_length is not None:
        overrides["segment_length"] = segment_length
    config = default_collect_config(domain, **overrides)
    start = time.perf_counter()
    run_collect(config, out, progress=not quiet)
    elapsed = time.perf_counter() - start
    dataset = load_dataset(out)
    stats = write_dataset_card(out, dataset, domain, {"recipe": asdict(config), "seconds (this call)": round(elapsed, 1)})
    payload = {"out": str(out), "episodes": dataset.num_episodes, "transitions": len(dataset), "seconds": round(elapsed, 1), "config": asdict(config), **stats}
    lines = [f"{dataset.num_episodes} episodes, {len(dataset)} transitions in {out} ({elapsed:.1f} s); card: {out / 'DATASET_CARD.md'}"]
    lines.append(_fmt_table(["task", "mean reward", "fraction > 0.5"], [[t, f"{v['mean']:.3f}", f"{v['above_half']:.3f}"] for t, v in stats["tasks"].items()]))
    if "room_fractions" in stats:
        lines.append(_fmt_table(["room", "fraction of states"], [[k, f"{v:.3f}"] for k, v in stats["room_fractions"].items()]))
    _emit(payload, as_json, "\n".join(lines))


@app.command()
def tasks(as_json: bool = JSON_OPT):
    """List the domains and their built-in tasks (user rewards are named domain:module:function)."""
    from fastbfm.envs import get_domain, list_domains

    rows = [
        {"task": t.full_name, "observation_dim": d.observation_dim, "action_dim": d.action_dim, "description": t.description}
        for d in map(get_domain, list_domains())
        for t in d.tasks.values()
    ]
    table = _fmt_table(["task", "obs", "action", "description"], [list(r.values()) for r in rows])
    _emit({"tasks": rows}, as_json, table)


@app.command()
def pretrain(
    data: Path = typer.Option(..., help="Dataset folder (ExORL layout)."),
    out: Path = typer.Option(..., help="Run folder: checkpoints, metrics.jsonl. Rerun to resume."),
    preset: str = typer.Option("cpu", help="Named preset: 'cpu' (about an hour on 2 cores) or 'paper' (GPU scale)."),
    updates: Optional[int] = typer.Option(None, min=1, help="Number of gradient updates (default: the preset's)."),
    checkpoint_every: int = typer.Option(5000, min=1, help="Updates between checkpoints."),
    seed: int = typer.Option(0, help="Seed of initialisation, batches and latents."),
    threads: int = typer.Option(2, min=1, help="Torch threads."),
    init_from: Optional[str] = typer.Option(None, help="Start from this model's weights (shipped name or checkpoint folder), fresh optimisers."),
    discount: Optional[float] = typer.Option(None, min=0.0, max=0.9999, help="Override the preset's discount."),
    lr_f: Optional[float] = typer.Option(None, min=0.0, help="Override the preset's learning rate of F."),
    lr_b: Optional[float] = typer.Option(None, min=0.0, help="Override the preset's learning rate of B."),
    lr_actor: Optional[float] = typer.Option(None, min=0.0, help="Override the preset's learning rate of the actor."),
    resimulate: bool = RESIM_OPT,
    as_json: bool = JSON_OPT,
    quiet: bool = QUIET_OPT,
):
    """Pretrain an FB model on a reward-free dataset (resumes from the run folder's last checkpoint)."""
    from fastbfm.bfm.checkpoint import read_json
    from fastbfm.bfm.train import pretrain as run_pretrain

    run_pretrain(
        data,
        out,
        preset,
        seed,
        updates,
        checkpoint_every,
        threads=threads,
        progress=not quiet,
        init_from=init_from,
        train_overrides={
            k: v for k, v in {"discount": discount, "lr_f": lr_f, "lr_b": lr_b, "lr_actor": lr_actor}.items() if v is not None
        },
        resimulate=resimulate,
    )
    meta = read_json(out / "config.json")["meta"]
    payload = {"out": str(out), "updates": meta["updates"], "wall_time_s": meta["wall_time_s"], "preset": preset}
    _emit(payload, as_json, f"trained {meta['updates']} updates in {meta['wall_time_s']} s -> {out}")


@app.command("eval")
def eval_(
    model: str = typer.Option(..., help="Shipped model name (see `fastbfm models`) or checkpoint folder."),
    task: list[str] = typer.Option(..., help="Task as domain:task; repeat for several."),
    episodes: int = typer.Option(10, min=1, help="Evaluation episodes per task."),
    data: Optional[Path] = typer.Option(None, help="Dataset for reward inference (default: the domain's exploration data)."),
    resimulate: bool = RESIM_OPT,
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
    bfm = _load(model, tasks)
    if len({t.domain for t in tasks}) > 1:
        raise FastBFMError("give tasks of one domain per call")
    goal_obs = None
    if goal is not None:
        try:
            goal_obs = [float(v) for v in goal.split(",")]
        except ValueError:
            raise FastBFMError(f"--goal takes comma-separated numbers, got '{goal}'") from None
    dataset = None if goal_obs is not None else ensure_dataset(tasks[0].domain, data, progress=not quiet, resimulate=resimulate)
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
    method: str = typer.Option(
        "lola", help="lola; black-box latent search: cmaes, cem; optimistic task inference (label-free unless --warm-start): opti-thompson, opti-ucb."
    ),
    warm_start: bool = typer.Option(False, help="opti-*: centre the prior on the zero-shot reward embedding (uses labelled samples)."),
    episodes: int = typer.Option(LoLAConfig.episodes, min=0, help="Adaptation budget in episodes."),
    seeds: int = typer.Option(3, min=1, help="Number of seeds (first_seed..first_seed+seeds-1)."),
    first_seed: int = typer.Option(0, min=0, help="First seed; e.g. 100 to tune on seeds disjoint from reported ones."),
    candidates: int = typer.Option(LoLAConfig.num_candidates, min=2, help="Latents rolled out per iteration (LoLA's k; the search's population)."),
    horizon: int = typer.Option(LoLAConfig.horizon, min=1, help="LoLA: lookahead steps before bootstrapping (H)."),
    sigma: float = typer.Option(LoLAConfig.sigma, help="Latent perturbation std per coordinate (the search's initial step)."),
    lr: float = typer.Option(LoLAConfig.lr, help="LoLA: Adam step size on the latent mean."),
    eval_episodes: int = typer.Option(LoLAConfig.eval_episodes, min=1, help="Evaluation episodes after each adaptation step."),
    data: Optional[Path] = typer.Option(None, help="Dataset for the zero-shot start (default: the domain's exploration data)."),
    resimulate: bool = RESIM_OPT,
    plot: Optional[Path] = typer.Option(None, help="Write the adaptation curves to this PNG."),
    as_json: bool = JSON_OPT,
    quiet: bool = QUIET_OPT,
):
    """Fast-adapt a frozen BFM to tasks by searching its latent space, starting from zero-shot."""
    from fastbfm.adapt.opti import OptiConfig
    from fastbfm.adapt.search import METHODS, SearchConfig
    from fastbfm.data import ensure_dataset
    from fastbfm.evaluate.experiments import METHOD_LABELS, needs_labels
    from fastbfm.evaluate.experiments import adapt as run_adapt
    from fastbfm.report.plots import plot_adaptation_curves

    if method not in METHOD_LABELS:
        raise FastBFMError(f"unknown method '{method}'; methods: {', '.join(METHOD_LABELS)}")
    tasks = _tasks(task)
    bfm = _load(model, tasks)
    if method == "lola":
        config = LoLAConfig(episodes=episodes, num_candidates=candidates, horizon=horizon, sigma=sigma, lr=lr, eval_episodes=eval_episodes)
    elif method in METHODS:
        config = SearchConfig(method=method, episodes=episodes, population=candidates, sigma=sigma, eval_episodes=eval_episodes)
    else:
        config = OptiConfig(rule=method.removeprefix("opti-"), episodes=episodes, warm_start=warm_start, eval_episodes=eval_episodes)
    if not needs_labels(config):
        datasets = {t.domain: None for t in tasks}
    else:
        datasets = {domain: ensure_dataset(domain, data, progress=not quiet, resimulate=resimulate) for domain in {t.domain for t in tasks}}
    results = [run_adapt(bfm, t, datasets[t.domain], config, list(range(first_seed, first_seed + seeds)), progress=not quiet) for t in tasks]
    if plot:
        curves = {r["task"]: [(r["episodes"], c) for c in r["curves"]] for r in results}
        plot_adaptation_curves(curves, plot, method=METHOD_LABELS[method])
    _emit({"model": model, "results": results}, as_json, _adapt_table(results, episodes, method))


def _adapt_table(results: list[dict], episodes: int, method: str = "lola") -> str:
    from fastbfm.evaluate.experiments import METHOD_LABELS

    name = METHOD_LABELS.get(method, method)
    return _fmt_table(
        ["task", "zero-shot", f"{name}@{episodes}", "change %", "lowest", "lowest vs zs %"],
        [
            [r["task"], r["zero_shot"], r["final"], r["change_pct"], r["lowest"], r["lowest_vs_zero_shot_pct"]]
            for r in results
        ],
    )


@app.command()
def headroom(
    model: str = typer.Option(..., help="Shipped model name or checkpoint folder."),
    task: list[str] = typer.Option(..., help="Task as domain:task; repeat for several."),
    latents: int = typer.Option(256, min=1, help="Candidate latents: around the zero-shot latent and on the whole sphere."),
    screen_episodes: int = typer.Option(3, min=1, help="Episodes that screen each candidate."),
    eval_episodes: int = typer.Option(10, min=1, help="Evaluation episodes of the finalists (the ones adaptation is measured on)."),
    seed: int = typer.Option(0, help="Seed of the candidates and the episodes."),
    data: Optional[Path] = typer.Option(None, help="Dataset for the zero-shot latent (default: the domain's exploration data)."),
    as_json: bool = JSON_OPT,
    quiet: bool = QUIET_OPT,
):
    """The reachable ceiling: the best of many latents, each evaluated well, against zero-shot."""
    from fastbfm.adapt.oracle import OracleConfig
    from fastbfm.adapt.oracle import headroom as run_headroom
    from fastbfm.adapt.zero_shot import infer_task
    from fastbfm.data import ensure_dataset

    tasks = _tasks(task)
    bfm = _load(model, tasks)
    config = OracleConfig(num_latents=latents, screen_episodes=screen_episodes, eval_episodes=eval_episodes, seed=seed)
    rows = []
    for t in tasks:
        prompt = infer_task(bfm, t, ensure_dataset(t.domain, data, progress=not quiet))
        result = run_headroom(bfm, t, prompt, config)
        gain = 100 * (result.best - result.zero_shot) / abs(result.zero_shot) if result.zero_shot else None
        rows.append({"task": t.full_name, "zero_shot": result.zero_shot, "best": result.best, "headroom_pct": gain, "latents": latents})
    table = _fmt_table(["task", "zero-shot", "best latent", "headroom %"], [[r["task"], r["zero_shot"], r["best"], r["headroom_pct"]] for r in rows])
    _emit({"model": model, "config": asdict(config), "results": rows}, as_json, table)


@app.command()
def doctor(as_json: bool = JSON_OPT):
    """Check the versions and settings fastbfm depends on (MuJoCo and dm_control pins, torch, rendering)."""
    from fastbfm.doctor import checks

    rows = checks()
    _emit({"checks": rows}, as_json, _fmt_table(["check", "status", "found", "fix"], [list(r.values()) for r in rows]))
    if any(r["status"] == "fail" for r in rows):
        raise typer.Exit(1)


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


bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks: measured rates and ratios against baselines run alongside.")
app.add_typer(bench_app, name="bench")


@bench_app.command("sim")
def bench_sim(
    task: str = typer.Option("walker:walk", help="Task whose domain is simulated."),
    envs: int = typer.Option(64, min=1, help="Simulations in the batch."),
    hidden: int = typer.Option(256, min=8, help="Width of the FB actor that drives them."),
    steps: int = typer.Option(300, min=10, help="Steps per measurement."),
    as_json: bool = JSON_OPT,
):
    """Closed-loop env-steps/s: fastbfm's batched rollout vs dm_control's env.step loop vs raw physics."""
    from fastbfm.bench import bench_sim as run

    r = run(task, envs, hidden, steps)
    table = _fmt_table(
        ["path", "env-steps/s", "ratio"],
        [
            ["fastbfm batched rollout", r["batched_steps_per_s"], "1.00"],
            ["dm_control env.step loop", r["dm_control_loop_steps_per_s"], f"{1 / r['speedup_vs_dm_control']:.2f}"],
            ["raw physics (mujoco.rollout)", r["raw_physics_steps_per_s"], f"{1 / r['fraction_of_raw_physics']:.2f}"],
        ],
    )
    table += f"\n\nbatched = {r['speedup_vs_dm_control']}x dm_control, {100 * r['fraction_of_raw_physics']:.0f}% of raw physics"
    _emit(r, as_json, table)


@bench_app.command("relabel")
def bench_relabel(
    task: str = typer.Option("walker:walk", help="Task whose reward is relabelled."),
    samples: int = typer.Option(50_000, min=100, help="Transitions to relabel."),
    as_json: bool = JSON_OPT,
):
    """Vectorised relabelling vs the per-sample dm_control loop on the same states."""
    from fastbfm.bench import bench_relabel as run

    r = run(task, samples)
    table = _fmt_table(
        ["path", "seconds", "samples/s"],
        [["vectorised", r["vectorised_s"], r["vectorised_samples_per_s"]], ["per-sample dm_control", r["per_sample_dm_control_s"], r["per_sample_samples_per_s"]]],
    )
    table += f"\n\nspeed-up {r['speedup']}x, max |difference| {r['max_abs_difference']:.2g}"
    _emit(r, as_json, table)


@bench_app.command("train")
def bench_train(
    domain: str = typer.Option("walker", help="Domain whose observation and action sizes the networks take."),
    updates: int = typer.Option(200, min=10, help="Timed updates per algorithm."),
    threads: int = typer.Option(2, min=1, help="Torch threads."),
    as_json: bool = JSON_OPT,
):
    """Gradient updates per second of each algorithm at its cpu preset."""
    from fastbfm.bench import bench_train as run

    r = run(domain, updates, threads)
    rows = [[name, v["updates_per_s"], v["batch_size"], v["hidden"]] for name, v in r["algorithms"].items()]
    _emit(r, as_json, _fmt_table(["algorithm", "updates/s", "batch", "hidden"], rows))


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
