"""Black-box latent search, the baseline LoLA must beat: CMA-ES (the ``cma`` package) and CEM over z.

Each generation rolls out ``population`` latents ``project(x_i)`` for one full episode each, all from
the same start state (common random numbers: candidates differ by their latent, not by their luck),
so a generation spends ``population`` episodes of budget. Fitness is the episode return; no critic is
used. With ``horizon=H`` (method ``cmaes-lookahead``, fastbfm's own combination) the fitness is LoLA's
lookahead score instead, H steps plus the frozen critic's bootstrap, so the same budget screens
episode_length / H times more latents, and CMA-ES's step-size and covariance adaptation replace LoLA's
fixed sigma and Adam step. The search starts at the zero-shot latent; after every generation the current mean is evaluated
on the same seeded episodes as LoLA's. Seeds run in lockstep in one batch of simulations.
"""

from __future__ import annotations

from dataclasses import dataclass

import cma
import numpy as np
import torch

from fastbfm.adapt.adapter import Adapter, run_seeds
from fastbfm.adapt.curve import AdaptationCurve
from fastbfm.adapt.lola import SCORES, lookahead_scores
from fastbfm.adapt.safe import SafeConfig
from fastbfm.adapt.zero_shot import TaskPrompt
from fastbfm.bfm.protocol import BFM, training_discount
from fastbfm.envs.registry import Task
from fastbfm.errors import FastBFMError
from fastbfm.schemas import check_finite_fields

METHODS = ("cmaes", "cem")


@dataclass(frozen=True)
class SearchConfig:
    method: str = "cmaes"
    episodes: int = 20
    """Adaptation budget in episodes; each candidate costs one."""
    population: int = 4
    horizon: int | None = None
    """None: each candidate's fitness is one full episode's return. An int H: LoLA's lookahead score, H
    steps from the generation's start state plus the frozen critic's bootstrap, so a candidate costs H
    steps instead of an episode and the same budget screens T / H times more latents."""
    sigma: float = 0.1
    """Initial search std per latent coordinate (latents have norm sqrt(d))."""
    score: str = "return"
    """With ``horizon``: how a lookahead is scored, as LoLA's (:data:`~fastbfm.adapt.lola.SCORES`)."""
    elite_fraction: float = 0.5
    safe: SafeConfig | None = SafeConfig()
    """Deploy a new latent only when a paired test on duel episodes within the budget shows it better
    (``fastbfm.adapt.safe``); None: the method's current latent is the policy (``--no-safe``)."""
    """CEM: fraction of each generation whose latents refit the Gaussian."""
    eval_episodes: int = 10
    eval_every: float = 0.0
    """Evaluate after every step of the method (0) or every this many episodes of budget."""

    @property
    def method_name(self) -> str:
        return (self.method if self.horizon is None else f"{self.method}-lookahead") + ("" if self.safe is not None else "-unsafe")

    def __post_init__(self):
        check_finite_fields(self, "the latent search")
        if self.method not in METHODS:
            raise FastBFMError(f"unknown search method '{self.method}'; methods: {', '.join(METHODS)}")
        if self.score not in SCORES:
            raise FastBFMError(f"the search's lookahead score is one of {', '.join(SCORES)}, got '{self.score}'")
        if self.population < 2 or self.episodes < 0 or self.sigma <= 0 or self.eval_episodes < 1 or not 0 < self.elite_fraction <= 1:
            raise FastBFMError("latent search needs population >= 2, episodes >= 0, sigma > 0, eval_episodes >= 1, 0 < elite_fraction <= 1")
        if self.horizon is not None and self.horizon < 1:
            raise FastBFMError("latent search needs horizon >= 1 (or None for full episodes)")


class _CEM:
    """Diagonal Gaussian refitted to the elites, with the ``cma`` ask/tell interface."""

    def __init__(self, mean: np.ndarray, sigma: float, population: int, elite_fraction: float, seed: int):
        self.mean, self.std = mean.astype(np.float64), np.full(len(mean), sigma)
        self.population, self.elites = population, max(1, int(round(elite_fraction * population)))
        self.rng = np.random.default_rng([seed, 3])

    def ask(self) -> list[np.ndarray]:
        return list(self.mean + self.std * self.rng.standard_normal((self.population, len(self.mean))))

    def tell(self, xs: list[np.ndarray], losses: np.ndarray) -> None:
        elite = np.array(xs)[np.argsort(losses)[: self.elites]]
        self.mean = elite.mean(0)
        # a floor keeps the search alive when the elites coincide
        self.std = np.maximum(elite.std(0), 1e-3 * self.std.max())


def _optimizer(config: SearchConfig, z0: np.ndarray, seed: int):
    if config.method == "cem":
        return _CEM(z0, config.sigma, config.population, config.elite_fraction, seed)
    # cma samples from numpy's global RNG unless given its own: one generator per run keeps runs
    # independent of each other (seeds in lockstep equal lone runs).
    rng = np.random.default_rng([seed, 3])
    options = {"popsize": config.population, "randn": lambda *shape: rng.standard_normal(shape), "verbose": -9, "seed": np.nan}
    return cma.CMAEvolutionStrategy(z0, config.sigma, options)


class LatentSearch(Adapter):
    """One CMA-ES or CEM run: a generation is one round of ``population`` candidates from one start state."""

    def __init__(self, model: BFM, prompt: TaskPrompt, config: SearchConfig, seed: int, episode_length: int):
        super().__init__(model, seed, rollouts=config.population, shared_start=True)
        self.config, self.label = config, config.method
        self.horizon = episode_length if config.horizon is None else min(config.horizon, episode_length)
        self.episode_length = episode_length
        self.z_reward, self.w = prompt.z.clone(), prompt.w.clone().expand(config.population, -1)
        self.optimizer = _optimizer(config, prompt.z.numpy().astype(np.float64), seed)
        self.gamma = None if config.horizon is None else training_discount(model)
        self.candidates = self.z = self.fitness = None

    def propose(self, start_obs: np.ndarray) -> None:
        self.candidates = self.optimizer.ask()
        self.z = self.model.project(torch.as_tensor(np.stack(self.candidates), dtype=torch.float32))

    def rollout_latents(self, t: int) -> torch.Tensor:
        return self.z

    def observe(self, obs, actions, rewards, next_obs) -> None:
        if self.config.horizon is None:
            self.fitness = rewards.sum(0)
        else:
            remaining = None if self.config.score == "discounted" else self.episode_length - len(rewards)
            self.fitness = lookahead_scores(self.model, rewards, next_obs[-1], self.z, self.w, self.gamma, pessimism=0.5, remaining=remaining)

    def update(self) -> None:
        if not np.isfinite(self.fitness).all():
            raise FastBFMError("non-finite returns")
        self.optimizer.tell(self.candidates, -self.fitness)

    def initial_latent(self) -> torch.Tensor:
        # z_r itself: re-projecting it moves a few bits, which changes returns on chaotic bodies
        return self.z_reward

    def current_latent(self) -> torch.Tensor:
        mean = self.optimizer.mean if isinstance(self.optimizer, _CEM) else np.asarray(self.optimizer.mean)
        return self.model.project(torch.as_tensor(mean, dtype=torch.float32))


def search_seeds(
    model: BFM, task: Task, prompt: TaskPrompt, config: SearchConfig, seeds: list[int], progress: bool = False
) -> list[AdaptationCurve]:
    """Independent searches, one per seed, in lockstep (one batch of simulations)."""
    return run_seeds(LatentSearch, model, task, prompt, config, seeds, progress)
