"""The headroom oracle: how good is the best policy the frozen latent space holds for a task?

Candidates are latents around the zero-shot z_r (``project(z_r + sigma * eps)`` at several noise
scales) and uniform directions on the whole sphere. Each is scored on ``screen_episodes`` episodes;
the best few are then re-evaluated on the fresh evaluation episodes that adaptation methods are
measured on, so the reported ceiling is not inflated by the luck of the screening (winner's curse).
It uses the task's reward without limit, so it is a yardstick, not an adaptation method.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from fastbfm.adapt.zero_shot import TaskPrompt
from fastbfm.bfm.protocol import BFM
from fastbfm.envs.batch import BatchedEnv
from fastbfm.envs.registry import Task, get_domain
from fastbfm.errors import FastBFMError
from fastbfm.rollout import eval_start_states, run_episodes
from fastbfm.schemas import check_finite_fields, check_seed


@dataclass(frozen=True)
class OracleConfig:
    num_latents: int = 256
    sigmas: tuple[float, ...] = (0.05, 0.1, 0.2, 0.4)
    """Noise scales around z_r; each gets an equal share of the local candidates."""
    sphere_fraction: float = 0.25
    """Share of the candidates drawn uniformly on the sphere instead of around z_r."""
    screen_episodes: int = 3
    finalists: int = 8
    eval_episodes: int = 10
    seed: int = 0

    def __post_init__(self):
        check_finite_fields(self, "the oracle")
        if self.num_latents < 1 or self.screen_episodes < 1 or self.finalists < 1 or self.eval_episodes < 1 or not self.sigmas:
            raise FastBFMError("the oracle needs num_latents, screen_episodes, finalists and eval_episodes >= 1 and one sigma or more")
        if not 0 <= self.sphere_fraction <= 1:
            raise FastBFMError("sphere_fraction lies in [0, 1]")
        check_seed(self.seed)


@dataclass
class Headroom:
    zero_shot: float
    """Zero-shot return on the evaluation episodes."""
    best: float
    """Return of the best latent found, on the same evaluation episodes (zero-shot included as a candidate)."""
    best_z: torch.Tensor
    screened: np.ndarray
    """Screening return of every candidate (index 0 is z_r)."""


def candidate_latents(model: BFM, z_reward: torch.Tensor, config: OracleConfig, generator: torch.Generator | None = None) -> torch.Tensor:
    """``z_reward`` then ``config.num_latents`` candidates around it and on the sphere; the draws come
    from ``generator`` (default: one seeded with ``config.seed``)."""
    generator = torch.Generator().manual_seed(config.seed) if generator is None else generator
    n_sphere = int(round(config.sphere_fraction * config.num_latents))
    n_local = config.num_latents - n_sphere
    sigmas = torch.tensor(config.sigmas).repeat_interleave(-(-n_local // len(config.sigmas)))[:n_local]
    local = model.project(z_reward + sigmas.unsqueeze(-1) * torch.randn(n_local, model.z_dim, generator=generator))
    sphere = model.project(torch.randn(n_sphere, model.z_dim, generator=generator))
    return torch.cat([z_reward.unsqueeze(0), local, sphere])


@torch.inference_mode()
def headroom(model: BFM, task: Task, prompt: TaskPrompt, config: OracleConfig = OracleConfig(), chunk: int = 512) -> Headroom:
    domain = get_domain(task.domain)
    latents = candidate_latents(model, prompt.z, config)
    screen_starts = domain.sample_initial_state(np.random.default_rng([config.seed, 11]), config.screen_episodes)
    screened = np.concatenate(
        [_returns(model, task, latents[i : i + chunk], screen_starts) for i in range(0, len(latents), chunk)]
    )
    finalists = np.unique(np.concatenate([[0], np.argsort(-screened)[: config.finalists]]))
    final = _returns(model, task, latents[finalists], eval_start_states(task, config.eval_episodes, config.seed))
    best = int(np.argmax(final))
    return Headroom(
        zero_shot=float(final[np.flatnonzero(finalists == 0)[0]]),
        best=float(final[best]),
        best_z=latents[finalists[best]].clone(),
        screened=screened,
    )


def _returns(model: BFM, task: Task, latents: torch.Tensor, starts: np.ndarray) -> np.ndarray:
    """Mean return of each latent over the same start states, all in one batch of simulations."""
    n, e = len(latents), len(starts)
    env = BatchedEnv(task, num_envs=n * e)
    returns = run_episodes(model, env, np.tile(starts, (n, 1)), latents.repeat_interleave(e, 0))
    return returns.reshape(n, e).mean(1)
