"""Experiments the CLI and the demo run: zero-shot tables and multi-seed adaptation."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np

from fastbfm.adapt.adapter import run_seeds
from fastbfm.adapt.curve import AdaptationCurve
from fastbfm.adapt.methods import method_of
from fastbfm.adapt.zero_shot import infer_goal, infer_task
from fastbfm.bfm.protocol import BFM
from fastbfm.data.dataset import TransitionDataset
from fastbfm.envs.registry import Task, get_domain
from fastbfm.errors import FastBFMError
from fastbfm.evaluate.paired import paired_curve
from fastbfm.rollout import evaluate_latent, random_policy_returns


def check_compatible(model: BFM, task: Task) -> None:
    domain = get_domain(task.domain)
    if (model.obs_dim, model.action_dim) != (domain.observation_dim, domain.action_dim):
        raise FastBFMError(
            f"the model (obs {model.obs_dim}, action {model.action_dim}) does not fit {task.full_name} "
            f"(obs {domain.observation_dim}, action {domain.action_dim})"
        )


def zero_shot(
    model: BFM,
    tasks: list[Task],
    dataset: TransitionDataset | None,
    episodes: int = 10,
    num_samples: int = 50_000,
    seed: int = 0,
    goal: list[float] | None = None,
) -> list[dict]:
    """Zero-shot returns per task, prompted by ``num_samples`` relabelled dataset samples or by a goal state."""
    rows = []
    for task in tasks:
        check_compatible(model, task)
        if goal is not None:
            z, n, n_rewarded = infer_goal(model, np.asarray(goal)), 0, 0
        else:
            prompt = infer_task(model, task, dataset, num_samples, seed)
            z, n, n_rewarded = prompt.z, prompt.num_samples, prompt.num_rewarded
        returns = evaluate_latent(model, task, z, episodes, seed)
        random = random_policy_returns(task, episodes, seed)
        rows.append(
            {
                "task": task.full_name,
                "zero_shot": float(returns.mean()),
                "zero_shot_std": float(returns.std()),
                "random": float(random.mean()),
                "random_std": float(random.std()),
                "episodes": episodes,
                "prompt": "goal" if goal is not None else "reward",
                "inference_samples": n,
                "rewarded_samples": n_rewarded,
            }
        )
    return rows


def adapt(
    model: BFM,
    task: Task,
    dataset: TransitionDataset | None,
    config,
    seeds: list[int],
    num_samples: int = 50_000,
    progress: bool = False,
) -> dict:
    """The adaptation method of ``config`` (see :mod:`fastbfm.adapt.methods`), once per seed; the summary pairs each seed's curve with its own start: the zero-shot latent of labelled
    samples, or for label-free task inference a draw from its prior."""
    check_compatible(model, task)
    if not seeds:
        raise FastBFMError("adaptation needs at least one seed")
    method = method_of(config)
    prompt = infer_task(model, task, dataset, num_samples, seed=0) if method.labels_needed(config) else None
    name = f"{method.name} {task.full_name}"
    curves: list[AdaptationCurve] = run_seeds(method.adapter, model, task, prompt, config, seeds, progress, name)
    returns = np.array([c.returns for c in curves])
    zs, final = returns[:, 0].mean(), returns[:, -1].mean()
    lowest = returns.mean(0).min()
    return {
        "task": task.full_name,
        "method": method.name,
        "start": "zero-shot" if prompt is not None else "prior draw (label-free)",
        "seeds": seeds,
        "zero_shot": float(zs),
        "final": float(final),
        "final_std": float(returns[:, -1].std()),
        "change_pct": float(100 * (final - zs) / abs(zs)) if zs != 0 else None,
        "lowest": float(lowest),
        "lowest_vs_zero_shot_pct": float(100 * (lowest - zs) / abs(zs)) if zs != 0 else None,
        "episodes": curves[0].episodes,
        "curves": returns.tolist(),
        # Latents as plain lists so that `fastbfm render` and `report --videos` can replay them.
        "z_zero_shot": prompt.z.tolist() if prompt is not None else None,
        "z": [c.z.tolist() if c.z is not None else None for c in curves],
        # per seed and point: each evaluation episode's return (paired by start state across points) and
        # the latent evaluated (`fastbfm render --evolution` replays them)
        "episode_returns": [c.episode_returns for c in curves],
        "latents": [c.latents for c in curves],
        "paired": paired_curve(np.array([c.episode_returns for c in curves])),
        "compute_s_per_episode": float(np.mean([c.compute_s for c in curves]) / max(config.episodes, 1)),
        "sim_s_per_episode": float(np.mean([c.sim_s for c in curves]) / max(config.episodes, 1)),
        "config": {k: v for k, v in asdict(config).items() if k != "seed"},
        "safe": is_safe(config),
    }


def is_safe(config) -> bool:
    """Whether the run's deployed latent moves only on a won paired test (``fastbfm.adapt.safe``)."""
    if hasattr(config, "confidence"):  # the race tests its own final
        return config.confidence is not None
    return getattr(config, "safe", None) is not None and getattr(config, "latent", "global") == "global"
