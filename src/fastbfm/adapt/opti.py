"""Optimistic task inference in the manner of OpTI-BFM (Rupf et al. 2025): no labelled data needed.

The task's reward is modelled as linear in the BFM's features, ``r(s') = phi(s')^T w + noise``, with a
Gaussian prior on ``w``; every adaptation episode adds its (phi(s'), r) pairs to a Bayesian linear
regression. Each episode's latent is chosen from the posterior:

- ``thompson``: ``z = project(w~)`` for one posterior draw ``w~``;
- ``ucb``: among ``candidates`` posterior draws (and the mean), the latent whose value at the start
  state, ``psi(s0, pi(s0, z), z)^T w``, is highest under an upper confidence bound
  ``psi^T mu + beta * sqrt(psi^T Sigma psi)``.

Label-free, the prior is ``N(0, I / prior_precision)``; warm-started, it is centred on the zero-shot
reward embedding ``w_r`` (from labelled samples) with precision ``warm_precision``. After every episode
the posterior mean's latent is evaluated on the same seeded episodes as the other methods.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from fastbfm.adapt.curve import AdaptationCurve, CurveRecorder
from fastbfm.adapt.zero_shot import TaskPrompt
from fastbfm.bfm.protocol import BFM
from fastbfm.envs.batch import BatchedEnv
from fastbfm.envs.registry import Task, get_domain
from fastbfm.errors import FastBFMError
from fastbfm.evaluate.rollout import SeedEvaluator

RULES = ("thompson", "ucb")


@dataclass(frozen=True)
class OptiConfig:
    rule: str = "thompson"
    episodes: int = 20
    warm_start: bool = False
    """Centre the prior on the zero-shot reward embedding (needs labelled samples); else label-free."""
    prior_precision: float = 1.0
    warm_precision: float = 100.0
    noise_std: float = 0.1
    """Std of the reward around phi^T w."""
    candidates: int = 16
    beta: float = 1.0
    eval_episodes: int = 10
    eval_every: float = 0.0
    """Evaluate after every step of the method (0) or every this many episodes of budget."""
    seed: int = 0

    def __post_init__(self):
        if self.rule not in RULES:
            raise FastBFMError(f"unknown inference rule '{self.rule}'; rules: {', '.join(RULES)}")
        if min(self.prior_precision, self.warm_precision, self.noise_std) <= 0 or self.candidates < 1 or self.eval_episodes < 1 or self.episodes < 0:
            raise FastBFMError("optimistic task inference needs positive precisions and noise, candidates >= 1, eval_episodes >= 1")


class LinearPosterior:
    """Bayesian linear regression ``r = phi^T w + N(0, noise^2)`` with a Gaussian prior, in float64."""

    def __init__(self, prior_mean: np.ndarray, prior_precision: float, noise_std: float):
        d = len(prior_mean)
        self.precision = prior_precision * np.eye(d)
        self.shift = prior_precision * np.asarray(prior_mean, dtype=np.float64)
        self.noise_var = noise_std**2

    def update(self, features: np.ndarray, rewards: np.ndarray) -> None:
        features = np.asarray(features, dtype=np.float64)
        self.precision += features.T @ features / self.noise_var
        self.shift += features.T @ np.asarray(rewards, dtype=np.float64) / self.noise_var

    @property
    def mean(self) -> np.ndarray:
        return np.linalg.solve(self.precision, self.shift)

    @property
    def cov(self) -> np.ndarray:
        return np.linalg.inv(self.precision)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        # w = mean + L^-T eps with precision = L L^T: exactly N(mean, precision^-1)
        chol = np.linalg.cholesky(self.precision)
        eps = rng.standard_normal((len(self.shift), n))
        return (self.mean[:, None] + np.linalg.solve(chol.T, eps)).T


@torch.inference_mode()
def opti_seeds(model: BFM, task: Task, prompt: TaskPrompt | None, config: OptiConfig, seeds: list[int], progress: bool = False) -> list[AdaptationCurve]:
    """Independent runs, one per seed, in lockstep (one batch of simulations); index 0 of each curve is
    the prior mean's latent (label-free: a draw from the prior, as the mean is zero)."""
    if config.warm_start and prompt is None:
        raise FastBFMError("a warm start needs the zero-shot prompt of labelled samples")
    domain = get_domain(task.domain)
    S, E, T = len(seeds), config.eval_episodes, domain.episode_length
    rngs = [np.random.default_rng([seed, 5]) for seed in seeds]
    prior_mean = prompt.w.double().numpy() if config.warm_start else np.zeros(model.z_dim)
    precision = config.warm_precision if config.warm_start else config.prior_precision
    posteriors = [LinearPosterior(prior_mean, precision, config.noise_std) for _ in seeds]
    env = BatchedEnv(task, num_envs=S)
    evaluate = SeedEvaluator(model, task, seeds, E)

    def latent(w: np.ndarray) -> torch.Tensor:
        return model.project(torch.as_tensor(w, dtype=torch.float32))

    means = np.stack([p.mean if config.warm_start else p.sample(1, rng)[0] for p, rng in zip(posteriors, rngs)])

    def current_returns() -> np.ndarray:
        return evaluate(latent(np.stack([p.mean for p in posteriors])))

    recorder = CurveRecorder(config.eval_every, evaluate(latent(means)))
    compute = 0.0
    for episode in tqdm(range(config.episodes), desc=f"opti-{config.rule} {task.full_name}", disable=not progress):
        start = time.perf_counter()
        starts = np.concatenate([domain.sample_initial_state(rng, 1) for rng in rngs])
        obs = env.set_state(starts)
        z = torch.stack([_choose(model, p, rng, obs[i], config) for i, (p, rng) in enumerate(zip(posteriors, rngs))])
        next_obs, rewards = np.empty((T, S, model.obs_dim), np.float32), np.empty((T, S))
        for t in range(T):
            obs, rewards[t] = env.step(model.act(torch.from_numpy(obs), z, mean=True).numpy())
            next_obs[t] = obs
        # one feature pass over the whole episode, off the simulation loop
        features = model.features(torch.from_numpy(next_obs.reshape(T * S, -1))).double().numpy().reshape(T, S, -1)
        if not (np.isfinite(rewards).all() and np.isfinite(features).all()):
            raise FastBFMError(f"OpTI on {task.full_name}: non-finite rewards or features in episode {episode}")
        for i, p in enumerate(posteriors):
            p.update(features[:, i], rewards[:, i])
        compute += time.perf_counter() - start
        recorder.step(float(episode + 1), current_returns)
    curves = recorder.finish(float(config.episodes), current_returns, compute, env.sim_seconds)
    for curve, p in zip(curves, posteriors):
        curve.z = latent(p.mean).clone()
    return curves


def _choose(model: BFM, posterior: LinearPosterior, rng: np.random.Generator, start_obs: np.ndarray, config: OptiConfig) -> torch.Tensor:
    if config.rule == "thompson":
        return model.project(torch.as_tensor(posterior.sample(1, rng)[0], dtype=torch.float32))
    ws = np.concatenate([posterior.mean[None], posterior.sample(config.candidates, rng)])
    z = model.project(torch.as_tensor(ws, dtype=torch.float32))
    obs = torch.from_numpy(start_obs).expand(len(ws), -1)
    psi = model.successor_features(obs, model.act(obs, z, mean=True), z).mean(0).double().numpy()
    mean, cov = posterior.mean, posterior.cov
    ucb = psi @ mean + config.beta * np.sqrt(np.einsum("nd,de,ne->n", psi, cov, psi).clip(min=0))
    return z[int(np.argmax(ucb))]
