"""Successor-feature BFMs (HILP, PSM): the inference-only model and the trainer stage they share.

A successor-feature BFM has state features phi(s) in R^d, universal successor features
psi(s, a, z) = E[sum_t gamma^t phi(s_{t+1}) | s, a, pi_z] and a policy pi(s, z) maximising psi^T z.
HILP and PSM differ only in how phi is learnt (``hilp.py``, ``psm.py``); given phi, both train psi
and pi the same way (:class:`SuccessorFeatureTrainer`), with phi frozen (no gradient from psi).

Inference (methods.md section 1): a reward is regressed on the features, w = lstsq(Phi, r), and
z_r = project(w); since psi^T w estimates Q in the reward's units, w is the reward embedding. A goal g
is the reward "1 at g", whose regression is w = Cov(phi)^+ phi(g) (HILP's goal latents during
training); the covariance is a running estimate kept with the weights.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass

import torch
from torch import nn

from fastbfm.bfm.device import adam_options
from fastbfm.bfm.losses import actor_loss, aggregate, successor_feature_loss
from fastbfm.bfm.nn import TwoStreamNet, mlp, project_to_sphere, soft_update
from fastbfm.bfm.protocol import NormalizedLatentPolicy, check_reward_embedding, check_reward_samples
from fastbfm.errors import FastBFMError


@dataclass(frozen=True)
class SFModelConfig:
    algorithm: str
    """'hilp' or 'psm': how phi was learnt (and whether it lives on the sphere, as PSM's basis does)."""
    obs_dim: int
    action_dim: int
    z_dim: int = 50
    hidden_dim: int = 256
    feature_hidden_dim: int = 256
    ensemble_size: int = 2

    @property
    def features_on_sphere(self) -> bool:
        return self.algorithm == "psm"


@dataclass(frozen=True)
class SFTrainConfig:
    """The successor-feature stage, common to HILP and PSM."""

    batch_size: int = 256
    num_updates: int = 100_000
    discount: float = 0.98
    lr_sf: float = 1e-4
    lr_actor: float = 1e-4
    tau: float = 0.01
    mix_ratio: float = 0.5
    actor_pessimism: float = 0.5
    actor_noise: float = 0.2
    noise_clip: float = 0.3
    q_loss: bool = False
    feature_ema: float = 0.005
    """Rate of the running mean and covariance of phi (HILP centres its features with the mean)."""


class SFModel(NormalizedLatentPolicy, nn.Module):
    """phi(s), psi(s, a, z) and pi(s, z); inference only (trainers: ``HILPTrainer``, ``PSMTrainer``)."""

    def __init__(self, config: SFModelConfig):
        super().__init__()
        if config.algorithm not in ("hilp", "psm"):
            raise FastBFMError(f"unknown successor-feature algorithm {config.algorithm!r}; expected hilp or psm")
        self.config = config
        self.algorithm = config.algorithm
        self.obs_dim, self.action_dim, self.z_dim = config.obs_dim, config.action_dim, config.z_dim
        self.feature_map = mlp(config.obs_dim, [config.feature_hidden_dim] * 2, config.z_dim, ensemble_size=1)
        self.successor_map = TwoStreamNet(
            config.obs_dim, config.action_dim, config.z_dim, config.hidden_dim, config.z_dim, config.ensemble_size
        )
        self.actor = TwoStreamNet(config.obs_dim, 0, config.z_dim, config.hidden_dim, config.action_dim, 1)
        self.register_buffer("obs_mean", torch.zeros(config.obs_dim))
        self.register_buffer("obs_std", torch.ones(config.obs_dim))
        self.register_buffer("feature_mean", torch.zeros(config.z_dim))
        self.register_buffer("feature_cov", torch.eye(config.z_dim))
        self.eval()
        self.requires_grad_(False)

    def config_dict(self) -> dict:
        return asdict(self.config)

    # -- networks (raw observations in) ---------------------------------------------------------
    def raw_features(self, obs: torch.Tensor) -> torch.Tensor:
        """phi(s) before centring: HILP's Hilbert embedding, or PSM's basis on the sqrt(d) sphere."""
        phi = self.feature_map(self.normalize(obs).unsqueeze(0))[0]
        return project_to_sphere(phi) if self.config.features_on_sphere else phi

    # -- protocol -------------------------------------------------------------------------------
    def features(self, obs):
        return self.raw_features(obs) - self.feature_mean

    def successor_features(self, obs, action, z):
        return self.successor_map(self.normalize(obs), action, z)

    def q_value(self, obs, action, z, z_reward, pessimism: float = 0.5):
        return aggregate((self.successor_features(obs, action, z) * z_reward).sum(-1), pessimism)

    def reward_embedding(self, next_obs, rewards):
        rewards = check_reward_samples(next_obs, rewards)
        phi = self.features(next_obs).double()
        return check_reward_embedding(torch.linalg.lstsq(phi, rewards.double()).solution[:, 0].to(self.obs_mean.dtype))

    def infer_from_rewards(self, next_obs, rewards):
        return self.project(self.reward_embedding(next_obs, rewards))

    def goal_embedding(self, goal: torch.Tensor) -> torch.Tensor:
        """Cov(phi)^+ phi(g): the regression of a reward that is 1 at g and 0 elsewhere."""
        precision = torch.linalg.pinv(self.feature_cov.double()).to(self.feature_cov.dtype)
        return self.features(goal) @ precision

    def infer_from_goal(self, goal):
        flat = goal.reshape(-1, self.obs_dim)
        return self.project(self.goal_embedding(flat)).reshape(*goal.shape[:-1], self.z_dim)


class SuccessorFeatureTrainer:
    """psi and pi given features: subclasses learn phi and call :meth:`update_successor_features`."""

    def __init__(self, model: SFModel, config: SFTrainConfig, generator: torch.Generator):
        self.model, self.config, self.generator = model, config, generator
        self.device = model.obs_mean.device
        model.train()
        model.requires_grad_(True)
        self.target_successor = copy.deepcopy(model.successor_map).requires_grad_(False)
        self.sf_optimizer = torch.optim.Adam(model.successor_map.parameters(), lr=config.lr_sf, **adam_options(self.device))
        self.actor_optimizer = torch.optim.Adam(model.actor.parameters(), lr=config.lr_actor, **adam_options(self.device))
        self.identity = torch.eye(model.z_dim, device=self.device)
        if self.device.type == "cuda":
            # cuSOLVER's LU keeps its pivots and error flags on the GPU (MAGMA's go through the host),
            # so the latents' inverse covariance neither synchronises nor breaks a CUDA graph
            torch.backends.cuda.preferred_linalg_library("cusolver")

    def modules(self) -> dict[str, nn.Module]:
        return {"target_successor": self.target_successor}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"sf": self.sf_optimizer, "actor": self.actor_optimizer}

    def sample_batch(self, data) -> dict[str, torch.Tensor]:
        return data.sample(self.config.batch_size, self.generator)

    @torch.no_grad()
    def track_feature_statistics(self, raw_phi: torch.Tensor, centre: bool) -> None:
        """Running mean (if ``centre``) and covariance of phi: the centring and goal inference of the model."""
        rate, model = self.config.feature_ema, self.model
        if centre:
            model.feature_mean.lerp_(raw_phi.mean(0), rate)
        centred = raw_phi - model.feature_mean
        model.feature_cov.lerp_(centred.T @ centred / len(centred), rate)

    def sample_training_z(self, features_next: torch.Tensor) -> torch.Tensor:
        """Half uniform on the sphere, half goal latents Cov^-1 phi(x) of shuffled batch states (HILP).

        The inverse is ``inv_ex`` of the covariance plus a ridge of 1e-6 of its mean variance: unlike
        ``pinv`` (an SVD whose convergence check reads a flag back), it never synchronises with a GPU."""
        n = features_next.shape[0]
        z = self.model.sample_z(n, self.generator)
        from_data = torch.rand(n, generator=self.generator, device=self.device) < self.config.mix_ratio
        perm = torch.randperm(n, generator=self.generator, device=self.device)
        with torch.no_grad():
            cov = features_next.T @ features_next / n
            ridge = 1e-6 * torch.diagonal(cov).mean() * self.identity
            z_data = self.model.project(features_next[perm] @ torch.linalg.inv_ex(cov + ridge).inverse)
        return torch.where(from_data.unsqueeze(-1), z_data, z)

    def update_successor_features(self, batch: dict[str, torch.Tensor], features_next: torch.Tensor) -> dict[str, torch.Tensor]:
        """One TD step of psi on phi(s') (no gradient into phi) and one actor step."""
        cfg, model = self.config, self.model
        obs, action, next_obs, discount = batch["obs"], batch["action"], batch["next_obs"], batch["discount"]
        features_next = features_next.detach()
        z = self.sample_training_z(features_next)
        with torch.no_grad():
            next_action = model.act(next_obs, z, mean=False, generator=self.generator, noise=cfg.actor_noise, clip=cfg.noise_clip)
            target_psi = self.target_successor(model.normalize(next_obs), next_action, z)
        psi = model.successor_features(obs, action, z)
        loss_sf, metrics = successor_feature_loss(psi, target_psi, features_next, cfg.discount * discount, z, cfg.q_loss)
        self.sf_optimizer.zero_grad(set_to_none=True)
        loss_sf.backward()
        self.sf_optimizer.step()

        action_pi = model.act(obs, z, mean=False, generator=self.generator, noise=cfg.actor_noise, clip=cfg.noise_clip)
        model.successor_map.requires_grad_(False)
        q = (model.successor_features(obs, action_pi, z) * z).sum(-1)
        loss_actor, actor_metrics = actor_loss(q, cfg.actor_pessimism)
        self.actor_optimizer.zero_grad(set_to_none=True)
        loss_actor.backward()
        self.actor_optimizer.step()
        model.successor_map.requires_grad_(True)

        soft_update(self.target_successor, model.successor_map, cfg.tau)
        metrics.update(actor_metrics)
        metrics.update(sf_loss=loss_sf.detach(), actor_loss=loss_actor.detach(), phi_norm=features_next.norm(dim=-1).mean())
        return metrics

