"""The inference protocol every BFM implements; adaptation and evaluation see only this."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

from fastbfm.bfm.losses import aggregate
from fastbfm.bfm.nn import project_to_sphere
from fastbfm.errors import FastBFMError


@runtime_checkable
class BFM(Protocol):
    z_dim: int
    obs_dim: int
    action_dim: int
    discount: float | None
    """The discount the model was trained with: its successor features are sums discounted by it, so
    methods that bootstrap with them (LoLA, ReLA, fine-tuning, the race) use it. None: not known (a Meta
    Motivo checkpoint loaded without one); those methods then refuse the model (:func:`training_discount`)."""

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


class LatentSampling:
    """Random latents: ``project`` of standard normal draws (uniform on the sphere when ``project`` normalises)."""

    def sample_z(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        # on the generator's device, else on the model's: a model on a GPU samples there
        if generator is not None:
            device = generator.device
        else:
            weights = next(iter(self.state_dict().values()), None) if isinstance(self, torch.nn.Module) else None
            device = weights.device if weights is not None else None
        return self.project(torch.randn(n, self.z_dim, generator=generator, device=device))


class ForwardBackwardInference(LatentSampling):
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


def training_discount(model: BFM) -> float:
    """``model.discount``, or a one-line error when the model does not know it."""
    discount = getattr(model, "discount", None)
    if discount is None:
        raise FastBFMError(
            f"the model ({type(model).__name__}) records no training discount, which adaptation bootstraps with: "
            "load it with the discount it was trained with (CLI: --discount; Python: load_model(..., discount=...))"
        )
    return float(discount)


def check_reward_samples(next_obs: torch.Tensor, rewards: torch.Tensor) -> torch.Tensor:
    """Rewards as a column matching ``next_obs``; a clear error for empty or mismatched samples."""
    rewards = rewards.reshape(-1, 1)
    if len(next_obs) == 0 or len(rewards) != len(next_obs):
        raise FastBFMError(f"reward inference needs as many rewards as states, got {len(rewards)} and {len(next_obs)}")
    return rewards


def check_reward_embedding(w: torch.Tensor) -> torch.Tensor:
    if not torch.isfinite(w).all() or w.norm() == 0:
        raise FastBFMError("reward inference failed: the rewards are all zero (or not finite) on the samples given")
    return w


class NormalizedLatentPolicy(LatentSampling):
    """What fastbfm's own models share: fixed per-dimension input normalisation from the training data
    (buffers ``obs_mean``, ``obs_std``, saved with the weights), a tanh actor ``self.actor`` with
    TD3-style clipped noise, and latents on the sqrt(d) sphere."""

    discount: float | None = None
    """Set by the trainer and by :func:`~fastbfm.bfm.checkpoint.load_model` (from the checkpoint's
    ``meta.train.discount``)."""

    def set_normalization(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.obs_mean.copy_(mean)
        self.obs_std.copy_(std.clamp_min(1e-6))

    def normalize(self, obs: torch.Tensor) -> torch.Tensor:
        # dm_control's flat observations are float64: accept them as the networks' dtype
        return (obs.to(self.obs_mean.dtype) - self.obs_mean) / self.obs_std

    def actor_mean(self, obs: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        empty = obs.new_zeros(obs.shape[0], 0)
        return torch.tanh(self.actor(self.normalize(obs), empty, z)[0])

    def act(self, obs, z, mean: bool = True, generator=None, noise: float = 0.2, clip: float = 0.3):
        action = self.actor_mean(obs, z)
        if mean:
            return action
        eps = torch.randn(action.shape, generator=generator, device=action.device) * noise
        noisy = action + eps.clamp(-clip, clip)
        # the clamp's value with the identity's gradient (Meta Motivo): the actor still learns from
        # samples whose noise pushed past a bound
        return noisy + (noisy.clamp(-1, 1) - noisy).detach()

    def project(self, z):
        return project_to_sphere(z)
