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

import time
from dataclasses import dataclass

import cma
import numpy as np
import torch
from tqdm.auto import tqdm

from fastbfm.adapt.curve import AdaptationCurve, CurveRecorder
from fastbfm.adapt.lola import lookahead_scores, model_discount
from fastbfm.adapt.zero_shot import TaskPrompt
from fastbfm.bfm.protocol import BFM
from fastbfm.envs.batch import BatchedEnv
from fastbfm.envs.registry import Task, get_domain
from fastbfm.errors import FastBFMError
from fastbfm.evaluate.rollout import SeedEvaluator, run_episodes

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
    elite_fraction: float = 0.5
    """CEM: fraction of each generation whose latents refit the Gaussian."""
    eval_episodes: int = 10
    eval_every: float = 0.0
    """Evaluate after every step of the method (0) or every this many episodes of budget."""
    seed: int = 0

    def __post_init__(self):
        if self.method not in METHODS:
            raise FastBFMError(f"unknown search method '{self.method}'; methods: {', '.join(METHODS)}")
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


@torch.inference_mode()
def search_seeds(
    model: BFM, task: Task, prompt: TaskPrompt, config: SearchConfig, seeds: list[int], progress: bool = False
) -> list[AdaptationCurve]:
    domain = get_domain(task.domain)
    S, P, E, T = len(seeds), config.population, config.eval_episodes, domain.episode_length
    H = T if config.horizon is None else min(config.horizon, T)
    generations = config.episodes * T // (P * H)
    gamma = model_discount(model)
    w = prompt.w.expand(S * P, -1)
    rngs = [np.random.default_rng([seed, 1]) for seed in seeds]
    optimizers = [_optimizer(config, prompt.z.numpy().astype(np.float64), seed) for seed in seeds]
    env = BatchedEnv(task, num_envs=S * P)
    evaluate = SeedEvaluator(model, task, seeds, E)

    def current() -> torch.Tensor:
        return model.project(torch.as_tensor(np.stack([_mean(o) for o in optimizers]), dtype=torch.float32))

    def current_returns() -> np.ndarray:
        return evaluate(current())

    # the start is z_r itself: re-projecting it moves a few bits, which changes returns on chaotic bodies
    recorder = CurveRecorder(config.eval_every, evaluate(prompt.z.expand(S, -1)))
    compute = 0.0
    for generation in tqdm(range(generations), desc=f"{config.method} {task.full_name}", disable=not progress):
        start = time.perf_counter()
        candidates = [o.ask() for o in optimizers]
        z = model.project(torch.as_tensor(np.concatenate(candidates), dtype=torch.float32))
        starts = np.concatenate([np.repeat(domain.sample_initial_state(rng, 1), P, axis=0) for rng in rngs])
        if config.horizon is None:
            returns = run_episodes(model, env, starts, z).reshape(S, P)
        else:
            returns = lookahead_scores(model, env, starts, z, w, H, gamma, pessimism=0.5).reshape(S, P)
        if not np.isfinite(returns).all():
            raise FastBFMError(f"{config.method} on {task.full_name}: non-finite returns at generation {generation}")
        for o, xs, r in zip(optimizers, candidates, returns):
            o.tell(xs, -r)
        compute += time.perf_counter() - start
        recorder.step((generation + 1) * P * H / T, current_returns)
    curves = recorder.finish(generations * P * H / T, current_returns, compute, env.sim_seconds)
    for curve, z_final in zip(curves, current()):
        curve.z = z_final.clone()
    return curves


def _mean(optimizer) -> np.ndarray:
    return optimizer.mean if isinstance(optimizer, _CEM) else np.asarray(optimizer.mean)
