"""A Meta Motivo FB / FB-CPR model behind fastbfm's BFM protocol."""

from __future__ import annotations

import torch
from torch import nn

from fastbfm.bfm.nn import project_to_sphere
from fastbfm.bfm.protocol import ForwardBackwardInference, check_reward_embedding, check_reward_samples
from fastbfm.interop.metamotivo.config import normalize_config
from fastbfm.interop.metamotivo.networks import ActorNet, BackwardNet, ObsNormalizer, forward_map

class MetaMotivoFB(ForwardBackwardInference, nn.Module):
    """A Meta Motivo FB / FB-CPR model's forward map, backward map, actor and observation normaliser.

    Inference only: evaluation mode, no parameter gradients, network calls under ``torch.no_grad``.
    Built from their model config (a ``config.json`` dict); ``load_state_dict`` takes their keys.
    """

    algorithm = "metamotivo-fb"
    discount: float | None = None
    """Set by :func:`~fastbfm.interop.metamotivo.load_metamotivo`: their configs do not record it."""

    def __init__(self, config: dict):
        super().__init__()
        cfg = normalize_config(config)
        self.config = cfg
        archi = cfg["archi"]
        self.obs_dim, self.action_dim, self.z_dim = cfg["obs_dim"], cfg["action_dim"], archi["z_dim"]
        self.ensemble_size = archi["f"].num_parallel
        self.actor_std, self.norm_z = float(cfg["actor_std"]), archi["norm_z"]
        self.inference_batch_size = cfg["inference_batch_size"]
        b = archi["b"]
        self._backward_map = BackwardNet(
            self.obs_dim, self.z_dim, b["hidden_dim"], b["hidden_layers"], bool(b["norm"])
        )
        self._forward_map = forward_map(self.obs_dim, self.action_dim, self.z_dim, archi["f"], self.z_dim)
        self._actor = ActorNet(self.obs_dim, self.z_dim, self.action_dim, archi["actor"])
        self._obs_normalizer = ObsNormalizer(self.obs_dim) if cfg["norm_obs"] else nn.Identity()
        self.meta: dict = {"source": "metamotivo", "model_type": "fb-cpr" if cfg["fb_cpr"] else "fb"}
        self.eval()
        self.requires_grad_(False)

    def normalize(self, obs: torch.Tensor) -> torch.Tensor:
        return self._obs_normalizer(obs)

    # -- networks (raw observations in) ---------------------------------------------------------
    @torch.no_grad()
    def B(self, obs: torch.Tensor) -> torch.Tensor:
        return self._backward_map(self.normalize(obs))

    @torch.no_grad()
    def F(self, obs: torch.Tensor, action: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self._forward_map(self.normalize(obs), action, z)

    @torch.no_grad()
    def actor_mean(self, obs: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self._actor(self.normalize(obs), z)

    # -- protocol -------------------------------------------------------------------------------
    def act(self, obs, z, mean: bool = True, generator=None):
        """Mean action, or Meta Motivo's exploration: Gaussian noise of std ``actor_std``, clamped to [-1, 1]."""
        action = self.actor_mean(obs, z)
        if mean:
            return action
        eps = torch.randn(action.shape, generator=generator, dtype=action.dtype, device=action.device)
        return (action + self.actor_std * eps).clamp(-1, 1)

    def project(self, z):
        # Meta Motivo leaves latents unnormalised when trained with norm_z = False.
        return project_to_sphere(z) if self.norm_z else z

    def _weighted_B_sum(self, next_obs: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        # Chunked like Meta Motivo's inference: humanoid prompts use 100k-500k samples.
        total = next_obs.new_zeros(self.z_dim)
        for start in range(0, len(next_obs), self.inference_batch_size):
            end = start + self.inference_batch_size
            total += weights[start:end] @ self.B(next_obs[start:end])
        return total

    def _check_samples(self, next_obs: torch.Tensor, rewards: torch.Tensor) -> torch.Tensor:
        return check_reward_samples(next_obs, rewards).reshape(-1).to(next_obs.dtype)

    def reward_embedding(self, next_obs, rewards):
        """E[r(s') B(s')]: Meta Motivo's reward_inference before projection, as a mean (value units)."""
        rewards = self._check_samples(next_obs, rewards)
        return check_reward_embedding(self._weighted_B_sum(next_obs, rewards) / len(rewards))

    def infer_from_rewards_weighted(self, next_obs, rewards, temperature: float = 10.0):
        """Meta Motivo's ``reward_wr_inference`` (used for the humanoid): rewards weighted by softmax(10 r)."""
        rewards = self._check_samples(next_obs, rewards)
        weights = torch.softmax(temperature * rewards, 0) * rewards
        return self.project(check_reward_embedding(self._weighted_B_sum(next_obs, weights)))
