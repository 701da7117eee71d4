"""The ``fastbfm`` command line. Every command that prints results also takes ``--json``."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Optional

import typer
from typer.exceptions import TyperException

from fastbfm import schemas as lim
from fastbfm.adapt import methods as registry
from fastbfm.adapt.lola import LoLAConfig
from fastbfm.adapt.safe import SafeConfig
from fastbfm.envs.user_reward import DEFAULT_TIMEOUT_S, set_reward_timeout
from fastbfm.errors import FastBFMError
from fastbfm.locks import folder_lock

# Plain help (click's), not rich's framed tables: at 80 columns rich squeezed descriptions into 17.
app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="Behavioral foundation models: collect reward-free data, pretrain, prompt zero-shot, fast-adapt.",
)

@app.callback()
def _global_options(
    reward_timeout: float = typer.Option(
        DEFAULT_TIMEOUT_S, min=0.0, max=1e6, envvar="FASTBFM_REWARD_TIMEOUT",
        help="Seconds a user reward may take per call (0: no limit).",
    ),
):  # fmt: skip
    set_reward_timeout(reward_timeout)
    os.environ["FASTBFM_REWARD_TIMEOUT"] = str(reward_timeout)  # for worker processes (grid)


RESIM_OPT = typer.Option(
    False, "--resimulate", help="Re-simulate --data's stored physics on this MuJoCo (for real ExORL folders, recorded by an older one)."
)
JSON_OPT = typer.Option(False, "--json", help="Print the results as one JSON object instead of a table.")
QUIET_OPT = typer.Option(False, "--quiet", "-q", help="No progress bars.")
DEVICE_OPT = typer.Option(
    "auto", help="Where the model's networks run: auto (CUDA when available), cpu or cuda. Rollouts and relabelling stay on the CPU."
)


def _emit(payload: dict, as_json: bool, table: str) -> None:
    typer.echo(json.dumps(payload, indent=2) if as_json else table)


def _fmt_table(header: list[str], rows: list[list]) -> str:
    cells = [header] + [[f"{c:.1f}" if isinstance(c, float) else ("-" if c is None else str(c)) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


DISCOUNT_OPT = typer.Option(
    None, min=0.0, max=0.9999, help="The discount the model was trained with, for checkpoints that record none (Meta Motivo's, "
    "e.g. 0.98; see docs/metamotivo.md). fastbfm checkpoints record theirs.",
)


def _load(model: str, tasks=(), discount: float | None = None, needs_discount: bool = False, device: str = "cpu"):
    """Load a model onto ``device`` and check that it fits every task before any data is touched."""
    from fastbfm.bfm.device import resolve_device
    from fastbfm.bfm.placement import place
    from fastbfm.evaluate.experiments import check_compatible
    from fastbfm.models import load_model

    where = resolve_device(device)
    bfm = load_model(model, discount=discount)
    if needs_discount and bfm.discount is None:
        raise FastBFMError(f"{model} records no training discount, which adaptation bootstraps with: give --discount (Meta Motivo's walker: 0.98)")
    for task in tasks:
        check_compatible(bfm, task)
    return place(bfm, where)


def _tasks(names: list[str]):
    from fastbfm.envs import get_task

    return [get_task(n) for n in names]


@app.command()
def collect(
    out: Path = typer.Option(..., help="Folder for the episodes (ExORL layout, one .npz per episode)."),
    domain: str = typer.Option("point_mass_maze", help="Domain to explore (see `fastbfm tasks`)."),
    episodes: Optional[int] = typer.Option(None, min=1, max=lim.MAX_COLLECT_EPISODES, help="Number of episodes (default: the domain's recipe, 1M transitions)."),
    segment_length: Optional[int] = typer.Option(None, min=1, max=lim.MAX_SEGMENT, help="Steps per episode (default: the domain's recipe)."),
    num_envs: int = typer.Option(50, min=1, max=lim.MAX_NUM_ENVS, help="Simulations stepped together."),
    seed: int = typer.Option(0, min=0, max=lim.MAX_SEED, help="Seed of the explorer."),
    explorer: str = typer.Option(
        "archive", help="archive: random actions restarted from rare states (the domain's recipe); rnd: DDPG rewarded by random "
        "network distillation, full episodes (docs/datasets.md)."
    ),
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
    overrides = {"num_envs": num_envs, "seed": seed, "explorer": explorer}
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
    partition = get_domain(domain).partition
    if partition is not None:
        shares = stats[f"{partition.name}_fractions"]
        lines.append(_fmt_table([partition.name, "fraction of states"], [[k, f"{v:.3f}"] for k, v in shares.items()]))
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
    algorithm: str = typer.Option("fb", help="BFM to train: fb, hilp or psm."),
    preset: str = typer.Option("cpu", help="Named preset: 'cpu' (about an hour on 2 cores), 'wide' (FB: width and batch 512) or 'paper' (GPU scale)."),
    updates: Optional[int] = typer.Option(None, min=1, max=lim.MAX_UPDATES, help="Number of gradient updates (default: the preset's)."),
    checkpoint_every: int = typer.Option(5000, min=1, max=lim.MAX_UPDATES, help="Updates between checkpoints."),
    seed: int = typer.Option(0, min=0, max=lim.MAX_SEED, help="Seed of initialisation, batches and latents."),
    threads: int = typer.Option(2, min=1, max=lim.MAX_THREADS, help="Torch threads."),
    init_from: Optional[str] = typer.Option(None, help="Start from this model's weights (shipped name or checkpoint folder), fresh optimisers."),
    discount: Optional[float] = typer.Option(None, min=0.0, max=0.9999, help="Override the preset's discount."),
    lr_f: Optional[float] = typer.Option(None, min=0.0, help="Override the preset's learning rate of F (fb only)."),
    lr_b: Optional[float] = typer.Option(None, min=0.0, help="Override the preset's learning rate of B (fb only)."),
    lr_actor: Optional[float] = typer.Option(None, min=0.0, help="Override the preset's learning rate of the actor."),
    device: str = typer.Option("auto", help="auto (CUDA when available), cpu or cuda: model, dataset and batch sampling live there."),
    max_minutes: Optional[float] = typer.Option(None, min=0.0, help="Stop after this many minutes with a checkpoint; rerun to continue."),
    log_every: int = typer.Option(1000, min=1, max=lim.MAX_UPDATES, help="Updates per row of metrics.jsonl (part of the run: a resume must keep it)."),
    tf32: bool = typer.Option(True, help="TF32 matmuls on CUDA (--no-tf32: full float32)."),
    bf16: Optional[bool] = typer.Option(
        None, help="Networks in bf16, float32 master weights and losses (default: on for networks 512+ wide where the CPU has native bf16; see `fastbfm doctor`)."
    ),
    cuda_graphs: bool = typer.Option(True, help="On CUDA, capture the whole update in a CUDA graph and replay it (--no-cuda-graphs: eager)."),
    allow_new_lr: bool = typer.Option(False, help="Resume with new learning rates (recorded as a new segment of the run's history)."),
    resimulate: bool = RESIM_OPT,
    tensorboard: bool = typer.Option(
        False, "--tensorboard", help="Also write the metrics as TensorBoard event files in --out (pip install 'fastbfm[tensorboard]')."
    ),
    as_json: bool = JSON_OPT,
    quiet: bool = QUIET_OPT,
):
    """Pretrain a BFM (FB, HILP or PSM) on a reward-free dataset (resumes from the run folder's last checkpoint).

    Rerunning into a run folder continues it; options that would change the run (seed, dataset, preset,
    discount, learning rates, ...) are refused with the list of differences."""
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
        algorithm=algorithm,
        device=device,
        max_minutes=max_minutes,
        log_every=log_every,
        tf32=tf32,
        bf16=bf16,
        cuda_graphs=cuda_graphs,
        allow_new_lr=allow_new_lr,
        tensorboard=tensorboard,
    )
    meta = read_json(out / "config.json", lim.ModelConfigFile)["meta"]
    complete = meta["updates"] >= meta["train"]["num_updates"]
    payload = {
        "out": str(out),
        "algorithm": algorithm,
        "updates": meta["updates"],
        "wall_time_s": meta["wall_time_s"],
        "preset": preset,
        "complete": complete,
        "device": meta["history"][-1]["device"],
    }
    stopped = "" if complete else f" (stopped at the time limit; rerun to continue to {meta['train']['num_updates']})"
    _emit(payload, as_json, f"trained {meta['updates']} updates in {meta['wall_time_s']} s -> {out}{stopped}")


@app.command("eval")
def eval_(
    model: str = typer.Option(..., help="Shipped model name (see `fastbfm models`) or checkpoint folder."),
    task: list[str] = typer.Option(..., help="Task as domain:task; repeat for several."),
    episodes: int = typer.Option(10, min=1, max=lim.MAX_EVAL_EPISODES, help="Evaluation episodes per task."),
    data: Optional[Path] = typer.Option(None, help="Dataset for reward inference (default: the domain's exploration data)."),
    resimulate: bool = RESIM_OPT,
    samples: int = typer.Option(50_000, min=1, max=lim.MAX_SAMPLES, help="Labelled samples for reward inference."),
    goal: Optional[str] = typer.Option(
        None, help="Prompt with a goal observation instead of rewards, comma-separated (maze: x,y,vx,vy)."
    ),
    seed: int = typer.Option(0, min=0, max=lim.MAX_SEED, help="Seed of the inference samples and the evaluation start states."),
    device: str = DEVICE_OPT,
    as_json: bool = JSON_OPT,
    quiet: bool = QUIET_OPT,
):
    """Zero-shot: infer each task's latent from labelled samples (or a goal) and evaluate it, beside a random policy."""
    from fastbfm.data import ensure_dataset
    from fastbfm.evaluate.experiments import zero_shot

    tasks = _tasks(task)
    bfm = _load(model, tasks, device=device)
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
        registry.DEFAULT_METHOD, help="; ".join(f"{m.name}: {m.summary}" for m in registry.METHODS.values()) + "."
    ),
    state_latent: bool = typer.Option(False, help="ReLA: a state-conditioned latent z(s) = project(z_r + delta(s)) instead of one global latent."),
    warm_start: bool = typer.Option(False, help="OpTI: centre the prior on the zero-shot reward embedding (uses labelled samples)."),
    episodes: int = typer.Option(registry.MethodOptions.episodes, min=0, max=lim.MAX_EPISODES, help="Adaptation budget in episodes."),
    seeds: int = typer.Option(3, min=1, max=lim.MAX_SEEDS, help="Number of seeds (first_seed..first_seed+seeds-1)."),
    first_seed: int = typer.Option(0, min=0, max=lim.MAX_SEED - lim.MAX_SEEDS, help="First seed; e.g. 100 to tune on seeds disjoint from reported ones."),
    candidates: Optional[int] = typer.Option(None, min=2, max=lim.MAX_CANDIDATES, help=f"Latents rolled out per iteration (LoLA's k; the search's population); default {LoLAConfig.num_candidates}."),
    horizon: Optional[int] = typer.Option(None, min=1, max=lim.MAX_STEPS, help=f"LoLA and CMA-ES with lookahead: lookahead steps before bootstrapping (H); default {LoLAConfig.horizon}."),
    sigma: Optional[float] = typer.Option(None, help=f"Latent perturbation std per coordinate (the search's initial step); default {LoLAConfig.sigma}."),
    lr: Optional[float] = typer.Option(None, help=f"LoLA: Adam step size on the latent mean; default {LoLAConfig.lr}."),
    score: Optional[str] = typer.Option(
        None, help=f"LoLA, race and cmaes-lookahead: how a lookahead is scored, return (the episode's return estimated from it) or discounted (the paper's); default {LoLAConfig.score}."
    ),
    eval_episodes: int = typer.Option(registry.MethodOptions.eval_episodes, min=1, max=lim.MAX_EVAL_EPISODES, help="Evaluation episodes after each adaptation step."),
    eval_every: float = typer.Option(0.0, min=0.0, max=lim.MAX_EPISODES, help="Evaluate every this many episodes of budget (0: after every step of the method)."),
    safe: bool = typer.Option(
        True, help="Latent-search methods (lola, rela, cmaes, cem, race...): deploy a new latent only when paired returns within "
        "the budget show it better with --confidence (docs/adaptation.md, 'Safe deployment'); --no-safe: the method's current latent is the policy."
    ),
    confidence: Optional[float] = typer.Option(None, min=0.5, max=0.9999, help=f"Safe deployment: confidence of the paired test; default {SafeConfig.confidence}."),
    safe_starts: Optional[int] = typer.Option(None, min=2, max=lim.MAX_EPISODES, help=f"Safe deployment (not race): duel start states, a duel's cost in episodes; default {SafeConfig.starts}."),
    safe_duels: Optional[int] = typer.Option(None, min=1, max=lim.MAX_EPISODES, help=f"Safe deployment (not race): duels over the budget, the last at its end; default {SafeConfig.duels}."),
    discount: Optional[float] = DISCOUNT_OPT,
    data: Optional[Path] = typer.Option(None, help="Dataset for the zero-shot start (default: the domain's exploration data)."),
    resimulate: bool = RESIM_OPT,
    plot: Optional[Path] = typer.Option(None, help="Write the adaptation curves to this PNG."),
    out: Optional[Path] = typer.Option(
        None, help="Run folder: results.json (with each seed's final latent z), curves.csv, adaptation_curves.png; "
        "read by `fastbfm report` and `fastbfm render --z-from`."
    ),
    device: str = DEVICE_OPT,
    as_json: bool = JSON_OPT,
    quiet: bool = QUIET_OPT,
):
    """Fast-adapt a frozen BFM to tasks by searching its latent space, starting from zero-shot."""
    from fastbfm.data import ensure_dataset
    from fastbfm.evaluate.experiments import adapt as run_adapt
    from fastbfm.report.plots import plot_adaptation_curves

    entry = registry.get_method(method)
    tasks = _tasks(task)
    bfm = _load(model, tasks, discount, needs_discount=True, device=device)
    config = entry.configure(registry.MethodOptions(
        episodes=episodes, eval_episodes=eval_episodes, eval_every=eval_every, candidates=candidates, horizon=horizon, sigma=sigma, lr=lr, score=score,
        state_latent=state_latent, warm_start=warm_start, safe=safe, confidence=confidence, safe_starts=safe_starts, safe_duels=safe_duels,
    ))
    method = config.method_name  # -unsafe with --no-safe
    if not entry.labels_needed(config):
        datasets = {t.domain: None for t in tasks}
    else:
        datasets = {domain: ensure_dataset(domain, data, progress=not quiet, resimulate=resimulate) for domain in {t.domain for t in tasks}}
    # a second `adapt --out` into the same folder is refused now, not after both have run
    with folder_lock(out, "fastbfm adapt --out") if out else contextlib.nullcontext():
        results = [run_adapt(bfm, t, datasets[t.domain], config, list(range(first_seed, first_seed + seeds)), progress=not quiet) for t in tasks]
        if plot:
            curves = {r["task"]: [(r["episodes"], c) for c in r["curves"]] for r in results}
            plot_adaptation_curves(curves, plot, method=registry.label(method))
        payload = {"model": model, "results": results}
        if out:
            from fastbfm.models import model_digest
            from fastbfm.report.run import write_run

            payload["model_digest"] = model_digest(model)

            plot_adaptation_curves({r["task"]: [(r["episodes"], c) for c in r["curves"]] for r in results},
                                   out / "adaptation_curves.png", method=registry.label(method))
            payload["files"] = {k: str(v) for k, v in write_run(out, payload).items()}
    _emit(payload, as_json, _adapt_table(results, episodes, method) + (f"\n\nrun folder: {out}" if out else ""))


def _adapt_table(results: list[dict], episodes: int, method: str = registry.DEFAULT_METHOD) -> str:
    name = registry.label(method)

    def paired(r: dict) -> list[str]:
        p = r.get("paired")
        if not p:
            return ["-", "-"]
        later = range(1, len(p["high"])) or range(1)  # point 0 is zero-shot itself
        worst = min(later, key=lambda i: p["difference"][i])
        dip = "dip" if any(p["high"][i] < 0 for i in later) else "no dip"
        return [f"{p['difference'][worst]:+.1f} [{p['low'][worst]:+.1f}, {p['high'][worst]:+.1f}] {dip}",
                f"{p['difference'][-1]:+.1f} [{p['low'][-1]:+.1f}, {p['high'][-1]:+.1f}]"]

    return _fmt_table(
        ["task", "zero-shot", f"{name}@{episodes}", "change %", "lowest", "lowest vs zs %", "worst paired point [95% CI]", "final - zs [95% CI]"],
        [
            [r["task"], r["zero_shot"], r["final"], r["change_pct"], r["lowest"], r["lowest_vs_zero_shot_pct"], *paired(r)]
            for r in results
        ],
    )


@app.command()
def grid(
    out: Path = typer.Option(..., help="Grid folder: cells/*.json (one per finished cell), results.csv, results.json. Rerun to resume."),
    model: list[str] = typer.Option(..., help="Model (shipped name or checkpoint folder); repeat for several."),
    task: list[str] = typer.Option(..., help="Task domain:task; repeat. Each model runs the tasks of its domain."),
    method: list[str] = typer.Option(
        [registry.ZERO_SHOT, registry.DEFAULT_METHOD],
        help=f"{registry.ZERO_SHOT}, " + ", ".join(registry.METHODS) + f", {registry.ORACLE} (the headroom yardstick); repeat."
    ),
    seeds: int = typer.Option(3, min=1, max=lim.MAX_SEEDS, help="Seeds 0..N-1 per cell."),
    episodes: int = typer.Option(20, min=1, max=lim.MAX_EPISODES, help="Adaptation budget in episodes."),
    eval_episodes: int = typer.Option(10, min=1, max=lim.MAX_EVAL_EPISODES, help="Evaluation episodes at each point of a curve."),
    eval_every: float = typer.Option(0.0, min=0.0, help="Evaluate every this many episodes of budget (0: after every step of a method)."),
    workers: int = typer.Option(2, min=1, max=lim.MAX_WORKERS, help="Local worker processes (one torch thread each)."),
    ray_address: Optional[str] = typer.Option(None, help="Run the cells as Ray tasks on this cluster (pip install 'fastbfm[ray]')."),
    lockstep: bool = typer.Option(False, "--lockstep", help="Run the missing seeds of each model, task and method in one process, "
                                  "their simulations in one batch (faster with wide models); still one cell per seed."),
    discount: Optional[float] = DISCOUNT_OPT,
    device: str = typer.Option(
        "auto", help="Where each cell's model runs: auto (CUDA when the worker has it), cpu or cuda (one CUDA context per worker)."
    ),
    as_json: bool = JSON_OPT,
    quiet: bool = QUIET_OPT,
):
    """Models x tasks x methods x seeds, resumable: finished cells are kept, a rerun does the rest."""
    from fastbfm.evaluate.grid import run_grid

    summary = run_grid(out, model, task, method, list(range(seeds)), episodes, eval_episodes, eval_every, workers, ray_address, not quiet,
                       discount=discount, device=device, lockstep=lockstep)
    rows = [[r["model"], r["task"], r["method"], f"{r['zero_shot']:.1f}", f"{r['final']:.1f}", f"{r['lowest']:.1f}"] for r in summary["results"]]
    table = _fmt_table(["model", "task", "method", "zero-shot", "final", "lowest"], rows)
    _emit(summary, as_json, f"{table}\n\n{summary['cells']} cells ({summary['ran']} run now) -> {out}")


@app.command()
def summarize(
    grids: list[Path] = typer.Argument(..., help="Grid folders (the --out of `fastbfm grid`), e.g. one per budget."),
    out: Path = typer.Option(Path("adaptation_report.md"), help="Markdown report to write; the PNG of the curves goes beside it."),
    min_zero_shot: float = typer.Option(10.0, min=0.0, help="Leave tasks with a lower zero-shot return out of relative changes and dips."),
    min_headroom: float = typer.Option(10.0, min=0.0, help="Leave tasks where the oracle beats zero-shot by less out of the headroom share."),
    title: str = typer.Option("Fast adaptation on the shipped zoo", help="Heading of the report."),
    as_json: bool = JSON_OPT,
):
    """Summarise grids per method: change over zero-shot at 10/20/50 episodes, worst dip, share of the oracle's headroom, compute."""
    import shlex
    import sys

    from fastbfm.report.adaptation import BUDGETS, Thresholds, pct, write_report

    command = "fastbfm summarize " + " ".join(shlex.quote(a) for a in sys.argv[2:])
    result = write_report(grids, out, command, Thresholds(min_zero_shot, min_headroom), title)
    rows = [[r["method"], r["tasks"], *(pct(r[f"improvement_{b}"]) for b in BUDGETS), pct(r["headroom_20"]), pct(r["worst_dip"]),
             "-" if r["paired_dips"] is None else f"{r['paired_dips']}/{r['tasks_paired']}", f"{r['compute_s']:.3g}"] for r in result["summary"]]
    table = _fmt_table(["method", "tasks", "@10", "@20", "@50", "headroom @20", "worst dip", "paired dips", "s/episode"], rows)
    _emit({"out": str(out), "summary": result["summary"]}, as_json, f"{table}\n\n-> {out}")


@app.command()
def headroom(
    model: str = typer.Option(..., help="Shipped model name or checkpoint folder."),
    task: list[str] = typer.Option(..., help="Task as domain:task; repeat for several."),
    latents: int = typer.Option(256, min=1, max=lim.MAX_BATCH_ENVS, help="Candidate latents: around the zero-shot latent and on the whole sphere."),
    screen_episodes: int = typer.Option(3, min=1, max=lim.MAX_EVAL_EPISODES, help="Episodes that screen each candidate."),
    eval_episodes: int = typer.Option(10, min=1, max=lim.MAX_EVAL_EPISODES, help="Evaluation episodes of the finalists (the ones adaptation is measured on)."),
    seed: int = typer.Option(0, min=0, max=lim.MAX_SEED, help="Seed of the candidates and the episodes."),
    data: Optional[Path] = typer.Option(None, help="Dataset for the zero-shot latent (default: the domain's exploration data)."),
    device: str = DEVICE_OPT,
    as_json: bool = JSON_OPT,
    quiet: bool = QUIET_OPT,
):
    """The reachable ceiling: the best of many latents, each evaluated well, against zero-shot."""
    from fastbfm.adapt.oracle import OracleConfig
    from fastbfm.adapt.oracle import headroom as run_headroom
    from fastbfm.adapt.zero_shot import infer_task
    from fastbfm.data import ensure_dataset

    tasks = _tasks(task)
    bfm = _load(model, tasks, device=device)
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
    """List the shipped models, with the discount each was trained with (the one adaptation bootstraps with)."""
    from fastbfm.bfm.checkpoint import read_json
    from fastbfm.zoo import ZOO_DIR, shipped_models

    rows = []
    for name in shipped_models():
        config = read_json(ZOO_DIR / name / "config.json", lim.ModelConfigFile)
        meta = config["meta"]
        rows.append({"name": name, "algorithm": config["algorithm"], "domain": meta.get("domain"), "updates": meta.get("updates"),
                     "discount": meta.get("train", {}).get("discount")})
    table = [[*list(r.values())[:4], f"{r['discount']:g}" if r["discount"] is not None else None] for r in rows]
    _emit({"models": rows}, as_json, _fmt_table(["name", "algorithm", "domain", "updates", "discount"], table))


@app.command()
def sign(
    folder: Path = typer.Argument(..., help="A fastbfm checkpoint folder (config.json + model.safetensors)."),
    as_json: bool = JSON_OPT,
):
    """Record the checksum of a checkpoint's weights that you vouch for (a checkpoint without one is refused)."""
    from fastbfm.bfm.checkpoint import sign_model

    if not folder.is_dir():
        raise FastBFMError(f"checkpoint not found: {folder}")
    with folder_lock(folder, "sign"):  # not while pretrain rewrites the checkpoint
        digest = sign_model(folder)
    _emit({"folder": str(folder), "sha256": digest}, as_json, f"signed {folder}: model.safetensors sha256 {digest}")


@app.command()
def demo(
    out: Path = typer.Option(Path("demo_out"), help="Folder for the curves PNG and results JSON."),
    episodes: int = typer.Option(20, min=1, max=lim.MAX_EPISODES, help="LoLA budget in episodes."),
    seeds: int = typer.Option(3, min=1, max=lim.MAX_SEEDS, help="Seeds per task."),
    as_json: bool = JSON_OPT,
    quiet: bool = QUIET_OPT,
):
    """The shipped maze FB model: zero-shot against 20 LoLA episodes on the four maze tasks, with a PNG of the curves."""
    from fastbfm.demo import run_demo

    results = run_demo(out, episodes=episodes, seeds=seeds, progress=not quiet)
    table = _adapt_table(results["results"], episodes) + f"\n\ncurves: {results['plot']}"
    _emit(results, as_json, table)


VIDEO_EVERY_OPT = typer.Option(4, min=1, max=lim.MAX_STEPS, help="Render every N-th control step (a 1000-step episode gives 1000/N frames).")
VIDEO_FPS_OPT = typer.Option(25, min=1, max=lim.MAX_FPS, help="Frames per second of the video.")
VIDEO_STEPS_OPT = typer.Option(None, min=1, max=lim.MAX_STEPS, help="Control steps to simulate (default: a whole episode, 1000).")
CAMERA_OPT = typer.Option(None, help="MuJoCo camera name or index (default: the domain's, one that keeps the body in view).")


@app.command()
def render(
    out: Path = typer.Option(..., help="Video file: .gif (Pillow) or .mp4 (needs imageio-ffmpeg: pip install imageio-ffmpeg)."),
    model: Optional[str] = typer.Option(None, help="Shipped model name or checkpoint folder (default: the model named in --z-from's results)."),
    task: Optional[str] = typer.Option(None, help="Task as domain:task (default: the only task in --z-from's results)."),
    z_from: str = typer.Option(
        "zero-shot", "--z-from",
        help="'zero-shot': the latent inferred from 50k labelled samples, alone; or a run folder / results.json of "
        "`fastbfm adapt --out` (or `fastbfm demo`): its zero-shot and adapted latents side by side.",
    ),
    method: Optional[str] = typer.Option(None, help="With --z-from RESULTS holding several methods for the task: which one."),
    adapted_seed: Optional[int] = typer.Option(None, min=0, max=lim.MAX_SEED, help="With --z-from RESULTS: the adaptation seed whose final latent is shown (default: the first)."),
    evolution: bool = typer.Option(
        False, "--evolution", help="With --z-from RESULTS: the deployed policy after each budget of --at side by side (the run must have "
        "evaluated those budgets, e.g. `fastbfm adapt --eval-every 5 --out RUN`)."
    ),
    at: list[float] = typer.Option([0.0, 5.0, 10.0, 20.0], "--at", min=0.0, max=lim.MAX_EPISODES, help="With --evolution: budgets in episodes; repeat."),
    seed: int = typer.Option(0, min=0, max=lim.MAX_SEED, help="Seed of the start state, the same for every panel (each return shown is a 1-episode evaluation with this seed)."),
    steps: Optional[int] = VIDEO_STEPS_OPT,
    every: int = VIDEO_EVERY_OPT,
    fps: int = VIDEO_FPS_OPT,
    width: int = typer.Option(320, min=16, max=lim.MAX_PIXELS, help="Width of each panel in pixels."),
    height: int = typer.Option(240, min=16, max=lim.MAX_PIXELS, help="Height of each panel in pixels (a label strip is added above)."),
    camera: Optional[str] = CAMERA_OPT,
    data: Optional[Path] = typer.Option(None, help="Dataset for the zero-shot latent (default: the domain's exploration data)."),
    resimulate: bool = RESIM_OPT,
    device: str = DEVICE_OPT,
    as_json: bool = JSON_OPT,
    quiet: bool = QUIET_OPT,
):
    """Render a video of a policy pi(., z), headless (MUJOCO_GL=egl): zero-shot alone, or zero-shot against adapted side by side.

    Each panel is labelled with its latent and the return so far; all panels start from the same state.
    """
    from fastbfm.report.video import FORMATS

    if out.suffix.lower() not in FORMATS:
        raise FastBFMError(f"--out must end in .gif or .mp4, got '{out.name}'")
    with folder_lock(out.parent, "render"):
        _render(out, model, z_from, task, method, adapted_seed, evolution, at, seed, steps, every, fps, width, height, camera, data,
                resimulate, device, as_json, quiet)  # fmt: skip


def _render(out, model, z_from, task, method, adapted_seed, evolution, at, seed, steps, every, fps, width, height, camera, data,
            resimulate, device, as_json, quiet) -> None:  # fmt: skip
    from fastbfm.data import ensure_dataset
    from fastbfm.envs import get_task
    from fastbfm.report.run import check_same_model, load_run, pick_result
    from fastbfm.report.video import before_after, render_latents, write_video, zero_shot_latent
    from fastbfm.report.video import evolution as evolution_latents

    if z_from == "zero-shot":
        if model is None or task is None:
            raise FastBFMError("--z-from zero-shot needs --model and --task")
        bfm = _load(model, [get_task(task)], device=device)
        dataset = ensure_dataset(get_task(task).domain, data, progress=not quiet, resimulate=resimulate)
        latents = {"zero-shot": zero_shot_latent(bfm, get_task(task), dataset)}
        result = None
    else:
        run = load_run(z_from)
        result = pick_result(run, task, method)
        model = model or run.get("model")
        if model is None:
            raise FastBFMError(f"'{z_from}' names no model: give --model")
        check_same_model(run, model, z_from)
        bfm = _load(model, [get_task(result["task"])], device=device)
        domain = get_task(result["task"]).domain
        if evolution:
            latents = evolution_latents(result, adapted_seed, tuple(at))
        else:
            latents = before_after(bfm, result, adapted_seed, lambda: ensure_dataset(domain, data, progress=not quiet, resimulate=resimulate))
    if evolution and result is None:
        raise FastBFMError("--evolution needs --z-from RESULTS (a run folder of `fastbfm adapt --out`)")
    the_task = get_task(result["task"] if result else task)
    frames, returns = render_latents(bfm, the_task, latents, seed, steps, every, width, height, camera, progress=not quiet)
    write_video(frames, out, fps)
    payload = {"out": str(out), "model": model, "task": the_task.full_name, "panels": list(latents), "returns": returns,
               "frames": len(frames), "seed": seed, "bytes": out.stat().st_size}
    table = _fmt_table(["panel", "return"], [[k, v] for k, v in returns.items()])
    _emit(payload, as_json, f"{table}\n\n{len(frames)} frames -> {out}")


@app.command()
def report(
    run_dir: Path = typer.Argument(..., help="Run folder with results.json: the --out of `fastbfm adapt` or `fastbfm demo`."),
    videos: bool = typer.Option(
        False, "--videos", help="Render zero-shot against adapted for every task and method into RUN_DIR/videos first "
        "(needs the latents that `adapt --out` stores; about a minute per task on 2 CPU cores)."
    ),
    out: Optional[Path] = typer.Option(None, help="HTML file to write (default: RUN_DIR/report.html)."),
    model: Optional[str] = typer.Option(None, help="With --videos: the model (default: the one named in results.json)."),
    video_format: str = typer.Option("gif", help="With --videos: gif or mp4 (mp4 needs imageio-ffmpeg)."),
    adapted_seed: Optional[int] = typer.Option(None, min=0, max=lim.MAX_SEED, help="With --videos: the adaptation seed whose latent is shown (default: the first)."),
    seed: int = typer.Option(0, min=0, max=lim.MAX_SEED, help="With --videos: seed of the start state."),
    steps: Optional[int] = VIDEO_STEPS_OPT,
    every: int = typer.Option(5, min=1, max=lim.MAX_STEPS, help="With --videos: render every N-th control step."),
    fps: int = VIDEO_FPS_OPT,
    width: int = typer.Option(256, min=16, max=lim.MAX_PIXELS, help="With --videos: width of each panel in pixels."),
    height: int = typer.Option(192, min=16, max=lim.MAX_PIXELS, help="With --videos: height of each panel in pixels."),
    camera: Optional[str] = CAMERA_OPT,
    data: Optional[Path] = typer.Option(None, help="With --videos, for label-free methods: dataset of the zero-shot latent."),
    as_json: bool = JSON_OPT,
    quiet: bool = QUIET_OPT,
):
    """Write one self-contained HTML page (RUN_DIR/report.html): result tables, adaptation curves, before/after videos and,
    for runs evaluated after 0, 5, 10 and 20 episodes, the deployed policy evolving during adaptation.

    Images and videos are embedded as base64 data URIs, so the page stands alone. Videos already in RUN_DIR or RUN_DIR/videos (.gif, .mp4) are included; --videos renders them.
    """
    from fastbfm.report.run import results_path

    if video_format not in ("gif", "mp4"):
        raise FastBFMError(f"--video-format is gif or mp4, got '{video_format}'")
    source = results_path(run_dir)
    with folder_lock(source.parent, "report"):
        _report(source, videos, out, model, video_format, adapted_seed, seed, steps, every, fps, width, height, camera, data, as_json, quiet)


def _report(source, videos, out, model, video_format, adapted_seed, seed, steps, every, fps, width, height, camera, data, as_json, quiet) -> None:
    from fastbfm.envs import get_task
    from fastbfm.report.html import find_videos, write_report
    from fastbfm.report.run import VIDEOS, check_same_model, has_latents, load_run, result_method
    from fastbfm.data import ensure_dataset
    from fastbfm.report.video import EVOLUTION_AT, before_after, evolution, render_latents, video_name, write_video

    run = load_run(source)
    notes, skipped = {}, []
    if videos:
        name = model or run.get("model")
        if name is None:
            raise FastBFMError(f"'{source}' names no model: give --model")
        check_same_model(run, name, source.parent)
        bfm = _load(name, [get_task(r["task"]) for r in run["results"]])
        for r in run["results"]:
            if not has_latents(r):
                skipped.append(f"{r['task']} ({result_method(r)})")
                continue
            domain = get_task(r["task"]).domain
            latents = before_after(bfm, r, adapted_seed, lambda: ensure_dataset(domain, data, progress=not quiet))
            frames, returns = render_latents(bfm, get_task(r["task"]), latents, seed, steps, every, width, height, camera, progress=not quiet)
            path = write_video(frames, source.parent / VIDEOS / video_name(r, f".{video_format}"), fps)
            notes[path.name] = f"{r['task']}: " + ", ".join(f"{k} return {v:.1f}" for k, v in returns.items()) + f" (start state of seed {seed})"
            if r.get("latents") and r["episodes"][-1] >= max(EVOLUTION_AT) and all(z is not None for z in r["latents"][0]):
                panels = evolution(r, adapted_seed)
                frames, returns = render_latents(bfm, get_task(r["task"]), panels, seed, steps, every, width, height, camera, progress=not quiet)
                path = write_video(frames, source.parent / VIDEOS / video_name(r, f"-evolution.{video_format}"), fps)
                notes[path.name] = (f"{r['task']}, the deployed policy during adaptation: "
                                    + ", ".join(f"{k} return {v:.1f}" for k, v in returns.items()) + f" (start state of seed {seed})")
    html_path = write_report(source, out, notes)
    embedded = [str(v) for v in find_videos(source.parent, run["results"])]
    payload = {"report": str(html_path), "bytes": html_path.stat().st_size, "results": len(run["results"]), "videos": embedded,
               "no_video": skipped}
    text = f"{html_path} ({html_path.stat().st_size / 1e6:.1f} MB, {len(run['results'])} results, {len(embedded)} videos)"
    if skipped:
        text += "\nno video (no single adapted latent, or results from an older fastbfm): " + ", ".join(skipped)
    _emit(payload, as_json, text)


bench_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, help="Benchmarks: measured rates and ratios against baselines run alongside.")
app.add_typer(bench_app, name="bench")


@bench_app.command("sim")
def bench_sim(
    task: str = typer.Option("walker:walk", help="Task whose domain is simulated."),
    envs: int = typer.Option(64, min=1, max=lim.MAX_BATCH_ENVS, help="Simulations in the batch."),
    hidden: int = typer.Option(256, min=8, max=lim.MAX_HIDDEN, help="Width of the FB actor that drives them."),
    steps: int = typer.Option(300, min=10, max=lim.MAX_STEPS, help="Steps per measurement."),
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
    samples: int = typer.Option(50_000, min=100, max=lim.MAX_SAMPLES, help="Transitions to relabel."),
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
    updates: int = typer.Option(200, min=10, max=lim.MAX_UPDATES, help="Timed updates per algorithm and preset."),
    threads: int = typer.Option(2, min=1, max=lim.MAX_THREADS, help="Torch threads."),
    device: str = typer.Option("auto", help="auto (CUDA when available), cpu or cuda."),
    preset: list[str] = typer.Option([], help="Preset to time; repeat for several (default: cpu, plus paper on CUDA)."),
    algorithm: list[str] = typer.Option([], help="Algorithm to time; repeat for several (default: all)."),
    tf32: bool = typer.Option(True, help="TF32 matmuls on CUDA."),
    bf16: Optional[bool] = typer.Option(None, help="Time only bf16 (--bf16) or only float32 (--no-bf16); default: both where bf16 is native."),
    baseline: bool = typer.Option(True, help="Time Meta Motivo's FBAgent at the same sizes when the metamotivo package is installed."),
    concurrent: int = typer.Option(0, min=0, max=64, help="CUDA: also time this many FB models trained at once on separate streams."),
    as_json: bool = JSON_OPT,
):
    """Gradient updates per second of each algorithm in float32 and bf16 (on CUDA: eager and CUDA graphs), with Meta Motivo's FBAgent as a same-run baseline."""
    from fastbfm.bench import bench_train as run

    r = run(domain, updates, threads, algorithm or None, device, preset or None, tf32, baseline, concurrent, bf16=bf16)
    rows = [
        [
            v["implementation"], v["algorithm"], v["preset"], v["mode"], v["precision"] + (" *" if v.get("default") else ""),
            v["updates_per_s"], v.get("bf16_speedup", ""), v.get("vs_metamotivo", ""), v["batch_size"], v["hidden"], v["z_dim"],
        ]
        for v in r["results"]
    ]  # fmt: skip
    extensions = ", ".join(r["vector_extensions"]) or "none found"
    table = f"{r['device']} ({r['device_type']}, {r['threads']} threads, torch {r['torch']}; vector extensions: {extensions}; "
    table += f"native bf16: {'yes' if r['native_bf16'] else 'no'})\n"
    table += _fmt_table(["implementation", "algorithm", "preset", "mode", "precision", "updates/s", "bf16/fp32", "fastbfm/mm", "batch", "hidden", "z"], rows)
    table += "\n* pretrain's default precision here"
    if "concurrent" in r:
        c = r["concurrent"]
        table += f"\n\n{c['models']} FB models at once ({c['preset']}): {c['total_updates_per_s_own_streams']} updates/s in all on their own streams, "
        table += f"{c['total_updates_per_s_one_stream']} on one stream ({c['speedup']}x)"
    _emit(r, as_json, table)


def main() -> None:
    import torch

    # Rollouts call small networks once per step: one torch thread leaves the other core to MuJoCo
    # and avoids OpenMP spin-waits (pretrain sets its own thread count).
    torch.set_num_threads(1)
    try:
        code = app(standalone_mode=False)
    except FastBFMError as e:
        typer.echo(f"error: {e}", err=True)
        sys.exit(2 if isinstance(e, registry.OptionError) else 1)
    except TyperException as e:
        # usage errors (unknown option or command, value out of range) on one line, not a framed box
        message = e.format_message().strip()
        if type(e).__name__ == "NoArgsIsHelpError":
            if message:  # without rich the help is the message; with rich it is already printed
                typer.echo(message, err=True)
        else:
            ctx = getattr(e, "ctx", None)
            hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
            typer.echo(f"error: {' '.join(message.split())}{hint}", err=True)
        sys.exit(getattr(e, "exit_code", 2))
    except (KeyboardInterrupt, typer.Abort):
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except OSError as e:  # e.g. --out names a file, a full disk, no permission
        typer.echo(f"error: {e}", err=True)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
