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

from dataclasses import dataclass

import numpy as np
import torch

from fastbfm.adapt.adapter import Adapter, run_seeds
from fastbfm.adapt.curve import AdaptationCurve
from fastbfm.adapt.zero_shot import TaskPrompt
from fastbfm.bfm.protocol import BFM
from fastbfm.envs.registry import Task
from fastbfm.errors import FastBFMError
from fastbfm.schemas import check_finite_fields

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

    @property
    def method_name(self) -> str:
        return f"opti-{self.rule}"

    def __post_init__(self):
        check_finite_fields(self, "OpTI")
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


class OptimisticInference(Adapter):
    """One run: a posterior over the reward's embedding, one episode per round with its chosen latent."""

    label = "OpTI"

    def __init__(self, model: BFM, prompt: TaskPrompt | None, config: OptiConfig, seed: int, episode_length: int):
        super().__init__(model, seed, rollouts=1, shared_start=False)
        if config.warm_start and prompt is None:
            raise FastBFMError("a warm start needs the zero-shot prompt of labelled samples")
        self.config, self.horizon = config, episode_length
        # one stream for start states and posterior draws
        self.rng = self.start_rng = np.random.default_rng([seed, 5])
        prior_mean = prompt.w.double().numpy() if config.warm_start else np.zeros(model.z_dim)
        precision = config.warm_precision if config.warm_start else config.prior_precision
        self.posterior = LinearPosterior(prior_mean, precision, config.noise_std)
        # label-free, the prior mean is zero: the policy before adaptation is a draw from the prior
        self.initial = self.posterior.mean if config.warm_start else self.posterior.sample(1, self.rng)[0]
        self.z = self.features = self.rewards = None

    def _latent(self, w: np.ndarray) -> torch.Tensor:
        return self.model.project(torch.as_tensor(w, dtype=torch.float32))

    def propose(self, start_obs: np.ndarray) -> None:
        self.z = _choose(self.model, self.posterior, self.rng, start_obs[0], self.config).unsqueeze(0)

    def rollout_latents(self, t: int) -> torch.Tensor:
        return self.z

    def observe(self, obs, actions, rewards, next_obs) -> None:
        # one feature pass over the whole episode, off the simulation loop
        with torch.no_grad():
            self.features = self.model.features(torch.from_numpy(next_obs[:, 0])).double().numpy()
        self.rewards = rewards[:, 0]

    def update(self) -> None:
        if not (np.isfinite(self.rewards).all() and np.isfinite(self.features).all()):
            raise FastBFMError("non-finite rewards or features")
        self.posterior.update(self.features, self.rewards)

    def initial_latent(self) -> torch.Tensor:
        return self._latent(self.initial)

    def current_latent(self) -> torch.Tensor:
        return self._latent(self.posterior.mean)


def opti_seeds(model: BFM, task: Task, prompt: TaskPrompt | None, config: OptiConfig, seeds: list[int], progress: bool = False) -> list[AdaptationCurve]:
    """Independent runs, one per seed, in lockstep (one batch of simulations); index 0 of each curve is
    the prior mean's latent (label-free: a draw from the prior, as the mean is zero)."""
    return run_seeds(OptimisticInference, model, task, prompt, config, seeds, progress, f"{config.method_name} {task.full_name}")


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
