"""Batched policy rollouts: one policy call and one simulation step per time step for all episodes."""

from __future__ import annotations

import numpy as np
import torch

from fastbfm.bfm.protocol import BFM
from fastbfm.envs.batch import BatchedEnv
from fastbfm.envs.registry import Task, get_domain
from fastbfm.schemas import check_seed


def eval_start_states(task: Task, episodes: int, seed: int) -> np.ndarray:
    """The seeded start states of evaluation: the same for every latent compared under one seed."""
    check_seed(seed)
    return get_domain(task.domain).sample_initial_state(np.random.default_rng([seed, 7919]), episodes)


@torch.inference_mode()
def evaluate_latent(model: BFM, task: Task, z: torch.Tensor, episodes: int = 10, seed: int = 0) -> np.ndarray:
    """Undiscounted returns of the deterministic policy pi(., z) over ``episodes`` seeded episodes.

    ``z`` is one latent (z_dim,) shared by all episodes, or one per episode (episodes, z_dim).
    """
    env = BatchedEnv(task, num_envs=episodes)
    z = z.expand(episodes, -1) if z.dim() == 1 else z
    return run_episodes(model, env, eval_start_states(task, episodes, seed), z)


@torch.inference_mode()
def run_episodes(model: BFM, env: BatchedEnv, starts: np.ndarray, z: torch.Tensor) -> np.ndarray:
    """Full episodes of pi(., z_i) from ``starts[i]`` in ``env``, one policy call per step; returns (N,)."""
    return run_policy(env, starts, lambda obs: model.act(torch.from_numpy(obs), z, mean=True).numpy())


class SeedEvaluator:
    """Evaluation of one latent per seed on that seed's fixed episodes, all seeds in one batch: what every
    adaptation method reports after each step, so that their curves are comparable."""

    def __init__(self, model: BFM, task: Task, seeds: list[int], episodes: int):
        self.model, self.episodes, self.num_seeds = model, episodes, len(seeds)
        self.env = BatchedEnv(task, num_envs=len(seeds) * episodes)
        self.starts = np.concatenate([eval_start_states(task, episodes, seed) for seed in seeds])

    @torch.inference_mode()
    def __call__(self, z: torch.Tensor) -> np.ndarray:
        """``z``: (seeds, z_dim) -> the return of each seed's episodes, (seeds, episodes): episode j of
        every call starts from the same state, so returns of two latents pair up by episode."""
        returns = run_episodes(self.model, self.env, self.starts, z.repeat_interleave(self.episodes, 0))
        return returns.reshape(self.num_seeds, self.episodes)

    @torch.inference_mode()
    def policies(self, act) -> np.ndarray:
        """The same episodes for policies that are not one latent of the frozen model (a state-conditioned
        latent, fine-tuned networks): ``act(seed_index, obs (episodes, obs_dim)) -> actions``; (seeds, episodes)."""
        E = self.episodes

        def policy(obs: np.ndarray) -> np.ndarray:
            return np.concatenate([act(i, obs[i * E : (i + 1) * E]) for i in range(self.num_seeds)])

        return run_policy(self.env, self.starts, policy).reshape(self.num_seeds, E)


def run_policy(env: BatchedEnv, starts: np.ndarray, policy) -> np.ndarray:
    """Full episodes from ``starts`` with ``policy(obs (N, obs_dim)) -> actions (N, action_dim)``; returns (N,)."""
    obs = env.set_state(starts)
    returns = np.zeros(env.num_envs)
    for _ in range(env.domain.episode_length):
        obs, reward = env.step(policy(obs))
        returns += reward
    return returns


def random_policy_returns(task: Task, episodes: int = 10, seed: int = 0) -> np.ndarray:
    """Returns of uniform random actions from the same seeded start states as :func:`evaluate_latent`."""
    env = BatchedEnv(task, num_envs=episodes)
    rng = np.random.default_rng([check_seed(seed), 104729])
    return run_policy(env, eval_start_states(task, episodes, seed), lambda obs: rng.uniform(-1, 1, (episodes, env.domain.action_dim)))
