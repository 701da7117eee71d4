"""Experiments the CLI and the demo run: zero-shot tables and multi-seed adaptation."""

from __future__ import annotations

from dataclasses import asdict, replace

import numpy as np

from fastbfm.adapt.adapter import Adapter, run_seeds
from fastbfm.adapt.curve import AdaptationCurve
from fastbfm.adapt.finetune import Finetune, FinetuneConfig
from fastbfm.adapt.lola import LoLA, LoLAConfig
from fastbfm.adapt.opti import OptiConfig, OptimisticInference
from fastbfm.adapt.race import Race, RaceConfig
from fastbfm.adapt.rela import ReLA, ReLAConfig
from fastbfm.adapt.search import LatentSearch, SearchConfig
from fastbfm.adapt.zero_shot import TaskPrompt, infer_goal, infer_task
from fastbfm.bfm.protocol import BFM
from fastbfm.data.dataset import TransitionDataset
from fastbfm.envs.registry import Task, get_domain
from fastbfm.errors import FastBFMError
from fastbfm.evaluate.paired import paired_curve
from fastbfm.evaluate.rollout import evaluate_latent, random_policy_returns

METHOD_LABELS = {
    "lola": "LoLA",
    "lola-reset-free": "LoLA (reset-free)",
    "rela": "ReLA",
    "finetune": "Fine-tuning",
    "cmaes": "CMA-ES",
    "cmaes-lookahead": "CMA-ES + lookahead",
    "cem": "CEM",
    "opti-thompson": "OpTI-TS",
    "opti-ucb": "OpTI-UCB",
    "race": "Race",
}
SAFE_METHODS = ("lola", "lola-reset-free", "rela", "cmaes", "cmaes-lookahead", "cem", "race")
"""Latent-search methods whose deployed latent is gated by default (``fastbfm.adapt.safe``; the race tests its
own final); ``<method>-unsafe`` names the method with the gate off."""
METHOD_LABELS.update({f"{m}-unsafe": METHOD_LABELS[m][:-1] + ", unsafe)" if METHOD_LABELS[m].endswith(")") else f"{METHOD_LABELS[m]} (unsafe)"
                      for m in SAFE_METHODS})
AdaptConfig = LoLAConfig | SearchConfig | OptiConfig | ReLAConfig | FinetuneConfig | RaceConfig
ADAPTERS: dict[type, type[Adapter]] = {
    LoLAConfig: LoLA,
    SearchConfig: LatentSearch,
    OptiConfig: OptimisticInference,
    ReLAConfig: ReLA,
    FinetuneConfig: Finetune,
    RaceConfig: Race,
}


def make_adapter(model: BFM, task: Task, prompt: TaskPrompt | None, config: AdaptConfig, seed: int) -> Adapter:
    """The adapter of ``config``'s method: one run with ``seed`` on ``task`` (see ``fastbfm.adapt.adapter``)."""
    return ADAPTERS[type(config)](model, prompt, config, seed, get_domain(task.domain).episode_length)


def is_safe(config: AdaptConfig) -> bool:
    """Whether the deployed latent moves only on a won paired test."""
    if isinstance(config, RaceConfig):
        return config.confidence is not None
    return getattr(config, "safe", None) is not None and not (isinstance(config, ReLAConfig) and config.latent == "state")


def unsafe(config: AdaptConfig) -> AdaptConfig:
    """The same method with its safe deployment off."""
    if isinstance(config, RaceConfig):
        return replace(config, confidence=None)
    return replace(config, safe=None) if hasattr(config, "safe") else config


def method_name(config: AdaptConfig) -> str:
    base = _base_name(config)
    return f"{base}-unsafe" if base in SAFE_METHODS and not is_safe(config) and not _state_latent(config) else base


def _state_latent(config: AdaptConfig) -> bool:
    return isinstance(config, ReLAConfig) and config.latent == "state"


def _base_name(config: AdaptConfig) -> str:
    if isinstance(config, SearchConfig):
        return config.method if config.horizon is None else f"{config.method}-lookahead"
    if isinstance(config, OptiConfig):
        return f"opti-{config.rule}"
    if isinstance(config, ReLAConfig):
        return "rela"
    if isinstance(config, FinetuneConfig):
        return "finetune"
    if isinstance(config, RaceConfig):
        return "race"
    return "lola-reset-free" if config.reset_free else "lola"


def needs_labels(config: AdaptConfig) -> bool:
    """Whether the method starts from the zero-shot latent of labelled samples."""
    return not isinstance(config, OptiConfig) or config.warm_start


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
    config: AdaptConfig,
    seeds: list[int],
    num_samples: int = 50_000,
    progress: bool = False,
) -> dict:
    """An adaptation method (LoLA, ReLA, fine-tuning, CMA-ES / CEM latent search, optimistic task inference), once per
    seed; the summary pairs each seed's curve with its own start: the zero-shot latent of labelled
    samples, or for label-free task inference a draw from its prior."""
    check_compatible(model, task)
    if not seeds:
        raise FastBFMError("adaptation needs at least one seed")
    prompt = infer_task(model, task, dataset, num_samples, seed=0) if needs_labels(config) else None
    name = f"{method_name(config)} {task.full_name}"
    curves: list[AdaptationCurve] = run_seeds(ADAPTERS[type(config)], model, task, prompt, config, seeds, progress, name)
    returns = np.array([c.returns for c in curves])
    zs, final = returns[:, 0].mean(), returns[:, -1].mean()
    lowest = returns.mean(0).min()
    return {
        "task": task.full_name,
        "method": method_name(config),
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
