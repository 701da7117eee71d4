"""The inference protocol every BFM implements; adaptation and evaluation see only this."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

from fastbfm.bfm.losses import aggregate


@runtime_checkable
class BFM(Protocol):
    z_dim: int
    obs_dim: int
    action_dim: int

    def act(self, obs: torch.Tensor, z: torch.Tensor, mean: bool = True, generator: torch.Generator | None = None) -> torch.Tensor:
        """Action of the latent-conditioned policy: (N, obs_dim), (N, z_dim) -> (N, action_dim)."""

    def features(self, obs: torch.Tensor) -> torch.Tensor:
        """State features phi(s) (FB: B(s)), (N, z_dim): rewards are read as linear in them."""

    def successor_features(self, obs: torch.Tensor, action: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Successor features psi(s, a, z) per ensemble member, (K, N, z_dim)."""

    def q_value(self, obs: torch.Tensor, action: torch.Tensor, z: torch.Tensor, z_reward: torch.Tensor, pessimism: float = 0.5) -> torch.Tensor:
        """Value of policy z for the reward encoded by ``z_reward``: aggregate_k psi_k(s, a, z)^T z_reward, (N,)."""

    def reward_embedding(self, next_obs: torch.Tensor, rewards: torch.Tensor) -> torch.Tensor:
        """Unprojected reward vector w, (z_dim,): ``psi(s, a, z)^T w`` is Q in the reward's own units."""

    def infer_from_rewards(self, next_obs: torch.Tensor, rewards: torch.Tensor) -> torch.Tensor:
        """Zero-shot latent for a reward given on samples (s'_i, r_i): ``project(reward_embedding)``, (z_dim,)."""

    def infer_from_goal(self, goal: torch.Tensor) -> torch.Tensor:
        """Latent that reaches a goal state, (z_dim,) for one goal or (N, z_dim) for N."""

    def project(self, z: torch.Tensor) -> torch.Tensor:
        """Map any vector onto the latent space (the sphere of radius sqrt(z_dim))."""


class ForwardBackwardInference:
    """The protocol methods shared by every forward-backward model, given its ``B``, ``F`` and ``project``
    (fastbfm's FB, Meta Motivo's FB / FB-CPR): features are B, successor features are F."""

    def features(self, obs):
        return self.B(obs)

    def successor_features(self, obs, action, z):
        return self.F(obs, action, z)

    def q_value(self, obs, action, z, z_reward, pessimism: float = 0.5):
        return aggregate((self.F(obs, action, z) * z_reward).sum(-1), pessimism)

    def infer_from_rewards(self, next_obs, rewards):
        return self.project(self.reward_embedding(next_obs, rewards))

    def infer_from_goal(self, goal):
        return self.project(self.B(goal.reshape(-1, self.obs_dim))).reshape(*goal.shape[:-1], self.z_dim)

    def sample_z(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.project(torch.randn(n, self.z_dim, generator=generator))
