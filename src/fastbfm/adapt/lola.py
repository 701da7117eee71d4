"""LoLA: lookahead latent adaptation (Sikchi et al., RLC 2025), reset-to-start-state form.

A Gaussian N(mu, sigma^2 I) over latents, mu starting at the zero-shot z_r; the networks stay frozen.
Each iteration draws a start state s0 from the task's reset distribution, rolls k latents
z_i = project(mu + sigma eps_i) out from that same s0 for H steps (k copies of the simulation in one
batch), scores each lookahead, and takes an Adam ascent step on mu with the leave-one-out REINFORCE
estimate mean_i (R_i - mean_{j!=i} R_j) eps_i / sigma, then re-projects mu. The paper's score is the
discounted lookahead with the frozen critic as bootstrap (``score="discounted"``),

    R_i = sum_{t<H} gamma^t r_t + gamma^H psi(s_H, pi(s_H, z_i), z_i)^T w_r,

(w_r: the reward's unprojected embedding, so the bootstrap is in the reward's units). fastbfm's default
(``score="return"``) estimates the episode's undiscounted return instead, the H rewards plus the rest of
the episode at the reward rate the lookahead ends at (:func:`lookahead_scores`): what the task measures.
After every iteration the current mu is evaluated on fixed seeded episodes.

Reset-free form (``reset_free=True``, method ``lola-reset-free``): the lookahead rollouts continue an
ongoing episode instead of restarting from the reset distribution. The k candidates of an iteration all
branch (by simulator state restore) from the state where the *first* candidate of the previous iteration
ended: a draw from the current search distribution, so the visited states follow the current policy
without the selection bias that continuing from the best candidate would add. The environment is reset
only at episode boundaries, when that chain of segments reaches episode_length steps; a last segment
shorter than H (when H does not divide the episode) is bootstrapped after its own length.
The budget is the same: k segments of H steps per iteration.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from fastbfm.adapt.adapter import Adapter, run_seeds
from fastbfm.adapt.curve import AdaptationCurve
from fastbfm.adapt.safe import SafeConfig
from fastbfm.adapt.zero_shot import TaskPrompt
from fastbfm.bfm.protocol import BFM, training_discount
from fastbfm.envs.registry import Task
from fastbfm.errors import FastBFMError
from fastbfm.schemas import check_finite_fields


SCORES = ("return", "discounted")
"""Lookahead scores: ``return`` estimates the episode's undiscounted return (fastbfm's default), ``discounted``
is the paper's discounted sum with the critic's bootstrap."""


@dataclass(frozen=True)
class LoLAConfig:
    episodes: int = 20
    """Adaptation budget in episodes of the task (episode_length environment steps each)."""
    num_candidates: int = 4
    horizon: int = 250
    sigma: float = 0.2
    """Std of the latent perturbation per coordinate; latents have norm sqrt(d), so about the relative noise."""
    lr: float = 0.1
    discount: float | None = None
    """Discount of the lookahead and bootstrap; None: the one the model was trained with (its successor
    features are sums discounted by it, ``model.discount``)."""
    pessimism: float = 0.5
    score: str = "return"
    """How a lookahead is scored (:data:`SCORES`): ``return``, the episode's undiscounted return estimated
    from the lookahead; ``discounted``, the paper's discounted sum with the critic's bootstrap."""
    reset_free: bool = False
    """Continue from where the previous lookahead ended; reset only at episode boundaries."""
    safe: SafeConfig | None = SafeConfig()
    """Deploy a new latent only when a paired test on duel episodes within the budget shows it better
    (``fastbfm.adapt.safe``); None: the method's current latent is the policy (``--no-safe``)."""
    eval_episodes: int = 10
    eval_every: float = 0.0
    """Evaluate after every iteration (0) or every this many episodes of budget."""
    seed: int = 0
    """The seed of :func:`lola` (a lone run); runs of several seeds take theirs from the caller."""

    @property
    def method_name(self) -> str:
        return ("lola-reset-free" if self.reset_free else "lola") + ("" if self.safe is not None else "-unsafe")

    def __post_init__(self):
        check_finite_fields(self, "LoLA")
        if self.num_candidates < 2:
            raise FastBFMError("LoLA needs at least 2 candidates for its leave-one-out baseline")
        if self.horizon < 1 or self.episodes < 0 or self.sigma <= 0 or self.lr <= 0 or self.eval_episodes < 1:
            raise FastBFMError("LoLA needs horizon >= 1, episodes >= 0, sigma > 0, lr > 0 and eval_episodes >= 1")
        if self.score not in SCORES:
            raise FastBFMError(f"LoLA's score is one of {', '.join(SCORES)}, got '{self.score}'")


def leave_one_out_gradient(scores: np.ndarray, eps: torch.Tensor, sigma: float) -> torch.Tensor:
    """LoLA's ascent direction on mu, ``mean_i (R_i - mean_{j!=i} R_j) eps_i / sigma``: scores (..., k) of
    the latents mu + sigma eps_i, eps (..., k, d) -> (..., d). The baseline of each candidate leaves it out,
    so the estimate of the gradient of E[R(mu + sigma eps)] stays unbiased."""
    k = scores.shape[-1]
    advantages = torch.from_numpy(scores - (scores.sum(-1, keepdims=True) - scores) / (k - 1)).float()
    return (advantages.unsqueeze(-1) * eps).mean(-2) / sigma


def lookahead_scores(
    model: BFM, rewards: np.ndarray, last_obs: np.ndarray, z: torch.Tensor, w: torch.Tensor, gamma: float, pessimism: float,
    remaining: int | None = None, window: int = 50,
) -> np.ndarray:
    """The score of each latent z_i after H simulated steps of pi(., z_i), from its rewards (H, N) and
    last observations (N, obs_dim).

    ``remaining=None``: LoLA's discounted lookahead, the discounted rewards then the frozen critic as
    bootstrap, sum_{t<H} gamma^t r_t + gamma^H psi(s_H, pi(s_H, z_i), z_i)^T w_i.

    ``remaining=n``: an estimate of the episode's undiscounted return, the H rewards plus n more steps at
    the reward rate where the lookahead ends, the mean of two estimates of it: the last ``window`` rewards
    and the critic's (1 - gamma) psi^T w. Episodes are scored by their undiscounted return, and at
    gamma = 0.98 the discounted form weighs the first 50 steps (on the walker: getting up) and barely
    the rest; measured on held-out walker rewards, this estimate ranks latents by their return far better.
    """
    H = len(rewards)
    with torch.no_grad():
        last = torch.from_numpy(last_obs)
        value = model.q_value(last, model.act(last, z, mean=True), z, w, pessimism).numpy()
    scores = np.zeros(rewards.shape[1])
    if remaining is None:
        discounts = gamma ** np.arange(H)
        for t in range(H):  # in step order, as the rewards arrived
            scores += discounts[t] * rewards[t]
        return scores + gamma**H * value
    for t in range(H):
        scores += rewards[t]
    recent = rewards[-min(window, H):].mean(0)
    return scores + remaining * (recent + (1 - gamma) * value) / 2


class LoLA(Adapter):
    """One LoLA run: the search distribution's mean mu, its Adam state and the seed's noise."""

    label = "LoLA"

    def __init__(self, model: BFM, prompt: TaskPrompt, config: LoLAConfig, seed: int, episode_length: int):
        super().__init__(model, seed, rollouts=config.num_candidates, shared_start=True)
        self.config, self.episode_length = config, episode_length
        self.horizon = min(config.horizon, episode_length)
        self.generator = torch.Generator().manual_seed(seed)
        self.w = prompt.w.clone().expand(config.num_candidates, -1)
        self.mu = torch.nn.Parameter(prompt.z.clone())
        self.optimizer = torch.optim.Adam([self.mu], lr=config.lr)
        self.gamma = training_discount(model) if config.discount is None else config.discount
        self.chain_t = 0  # reset-free: time of the ongoing episode
        self.eps = self.z = self.scores = None

    def next_horizon(self) -> int:
        return min(self.horizon, self.episode_length - self.chain_t) if self.config.reset_free else self.horizon

    @property
    def resume(self) -> bool:
        return self.chain_t != 0

    def propose(self, start_obs: np.ndarray) -> None:
        self.eps = torch.randn(self.rollouts, self.model.z_dim, generator=self.generator)
        self.z = self.model.project(self.mu.detach() + self.config.sigma * self.eps)

    def rollout_latents(self, t: int) -> torch.Tensor:
        return self.z

    def observe(self, obs, actions, rewards, next_obs) -> None:
        remaining = None if self.config.score == "discounted" else self.episode_length - self.chain_t - len(rewards)
        self.scores = lookahead_scores(self.model, rewards, next_obs[-1], self.z, self.w, self.gamma, self.config.pessimism, remaining)
        if self.config.reset_free:
            self.chain_t = (self.chain_t + len(rewards)) % self.episode_length

    def update(self) -> None:
        if not np.isfinite(self.scores).all():
            raise FastBFMError("non-finite scores")
        self.optimizer.zero_grad()
        self.mu.grad = -leave_one_out_gradient(self.scores, self.eps, self.config.sigma)
        self.optimizer.step()
        with torch.no_grad():
            self.mu.copy_(self.model.project(self.mu))

    def current_latent(self) -> torch.Tensor:
        return self.mu.detach()


def lola(model: BFM, task: Task, prompt: TaskPrompt, config: LoLAConfig = LoLAConfig(), progress: bool = False) -> AdaptationCurve:
    """One LoLA run with ``config.seed``."""
    return lola_seeds(model, task, prompt, config, [config.seed], progress)[0]


def lola_seeds(
    model: BFM, task: Task, prompt: TaskPrompt, config: LoLAConfig, seeds: list[int], progress: bool = False
) -> list[AdaptationCurve]:
    """Independent LoLA runs, one per seed, stepped in lockstep so that all their simulations share one
    batch and one policy call per step. Each run equals a lone run with that seed: its own start states,
    noise and Adam state."""
    return run_seeds(LoLA, model, task, prompt, config, seeds, progress, f"{config.method_name} {task.full_name}")
