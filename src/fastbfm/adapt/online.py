"""Pieces shared by the online off-policy methods (ReLA, actor-critic fine-tuning): a replay buffer per
seed and TD3's smoothed target action.

Both methods collect one episode per round with the current policy plus Gaussian action noise, then run
their updates on that seed's replay buffer; the budget is the number of collected episodes.
"""

from __future__ import annotations

import numpy as np
import torch

from fastbfm.errors import FastBFMError


class ReplayBuffer:
    """Transitions (s, a, r, s', z) of one run, preallocated for its whole budget; float32 tensors.
    ``z`` is the latent that acted (empty when ``z_dim`` is 0)."""

    def __init__(self, capacity: int, obs_dim: int, action_dim: int, z_dim: int = 0):
        self.obs = torch.empty(capacity, obs_dim)
        self.action = torch.empty(capacity, action_dim)
        self.reward = torch.empty(capacity)
        self.next_obs = torch.empty(capacity, obs_dim)
        self.z = torch.empty(capacity, z_dim)
        self.size = 0

    def add(self, obs: np.ndarray, action: np.ndarray, reward: np.ndarray, next_obs: np.ndarray, z: np.ndarray | None = None) -> None:
        n = len(obs)
        end = self.size + n
        if end > len(self.obs):
            raise FastBFMError(f"the replay buffer holds the budget's {len(self.obs)} transitions: raise the config's episodes to collect more")
        fields = [(self.obs, obs), (self.action, action), (self.reward, reward), (self.next_obs, next_obs)]
        for field, value in fields + ([(self.z, z)] if z is not None else []):
            field[self.size : end] = torch.as_tensor(np.asarray(value, dtype=np.float32))
        self.size = end

    def sample(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        idx = torch.randint(self.size, (n,), generator=generator)
        return self.obs[idx], self.action[idx], self.reward[idx], self.next_obs[idx], self.z[idx]


def smoothed(action: torch.Tensor, generator: torch.Generator, noise: float, clip: float) -> torch.Tensor:
    """TD3's target policy smoothing: clipped Gaussian noise on the target action."""
    eps = (torch.randn(action.shape, generator=generator) * noise).clamp(-clip, clip)
    return (action + eps).clamp(-1, 1)
