"""Forward-backward representations: the inference-only model and its trainer.

Choices where the reference codebases differ (anchors.md section 7), each a config knob:
- forward ensemble: two fully independent F networks in one batched layer (Meta Motivo);
- target aggregation: the mean of the two F's (Meta Motivo). With fully independent F's the min
  compounds a downward bias over the 1/(1 - gamma) horizon: on the maze (gamma 0.99) it drove the mean
  target M to -266 by 27k updates while the actor's Q rose, and zero-shot returns collapsed;
- actor: maximises the min of the two F's (pessimism 0.5, all four codebases);
- orthonormality loss at Meta Motivo's scale (1/2 off-diagonal, 1 diagonal), weight 1;
- training latents: half Gaussian directions on the sqrt(d) sphere, half B(s') of shuffled batch
  states (Meta Motivo uses s', the others s);
- initialisation: orthogonal weights and zero biases, F's layers at ReLU gain, B's and the actor's at
  gain 1 (Meta Motivo);
- one learning rate for F, B and actor (Meta Motivo's maze setting of 1e-6 for B and actor is meant
  for a 3M-update budget, far beyond a CPU preset).
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass

import torch
from torch import nn

from fastbfm.bfm.device import adam_options
from fastbfm.bfm.losses import actor_loss, aggregate, fb_loss, orthonormality_loss
from fastbfm.bfm.nn import TwoStreamNet, mlp, orthogonal_init_, project_to_sphere, soft_update
from fastbfm.bfm.protocol import ForwardBackwardInference, NormalizedLatentPolicy, check_reward_embedding, check_reward_samples


@dataclass(frozen=True)
class FBModelConfig:
    obs_dim: int
    action_dim: int
    z_dim: int = 50
    hidden_dim: int = 256
    backward_hidden_dim: int = 256
    ensemble_size: int = 2


@dataclass(frozen=True)
class FBTrainConfig:
    batch_size: int = 256
    num_updates: int = 100_000
    discount: float = 0.99
    lr_f: float = 1e-4
    lr_b: float = 1e-4
    lr_actor: float = 1e-4
    tau: float = 0.01
    ortho_coef: float = 1.0
    mix_ratio: float = 0.5
    target_pessimism: float = 0.0
    actor_pessimism: float = 0.5
    actor_noise: float = 0.2
    noise_clip: float = 0.3


# Named presets: (model overrides, train config). "cpu" trains in about an hour on 2 cores; "wide"
# doubles width and batch (the size where bf16 starts to pay on a CPU); "paper" is the published scale
# (hidden 1024, batch 1024, 1M+ updates) for a GPU.
PRESETS: dict[str, tuple[dict, FBTrainConfig]] = {
    "cpu": (dict(z_dim=50, hidden_dim=256, backward_hidden_dim=256), FBTrainConfig(batch_size=256, num_updates=100_000)),
    "wide": (dict(z_dim=50, hidden_dim=512, backward_hidden_dim=256), FBTrainConfig(batch_size=512, num_updates=100_000)),
    "paper": (
        dict(z_dim=100, hidden_dim=1024, backward_hidden_dim=256),
        FBTrainConfig(batch_size=1024, num_updates=1_000_000),
    ),
}


class FBModel(NormalizedLatentPolicy, ForwardBackwardInference, nn.Module):
    """F(s, a, z), B(s) and pi(s, z); inference only (see :class:`FBTrainer` for learning)."""

    algorithm = "fb"

    def __init__(self, config: FBModelConfig):
        super().__init__()
        self.config = config
        self.obs_dim, self.action_dim, self.z_dim = config.obs_dim, config.action_dim, config.z_dim
        self.forward_map = TwoStreamNet(
            config.obs_dim, config.action_dim, config.z_dim, config.hidden_dim, config.z_dim, config.ensemble_size
        )
        self.backward_map = mlp(config.obs_dim, [config.backward_hidden_dim] * 2, config.z_dim, ensemble_size=1)
        self.actor = TwoStreamNet(config.obs_dim, 0, config.z_dim, config.hidden_dim, config.action_dim, 1)
        # Meta Motivo's: F's layers at ReLU gain; B and the actor at gain 1
        orthogonal_init_(self.forward_map, nn.init.calculate_gain("relu"))
        orthogonal_init_(self.backward_map, 1.0)
        orthogonal_init_(self.actor, 1.0)
        # Fixed per-dimension affine input normalisation from the training data (saved with the weights):
        # the maze's positions span only +-0.3 m and velocities +-0.1 m/s, too small for a sharp B.
        self.register_buffer("obs_mean", torch.zeros(config.obs_dim))
        self.register_buffer("obs_std", torch.ones(config.obs_dim))
        self.eval()
        self.requires_grad_(False)

    def config_dict(self) -> dict:
        return asdict(self.config)

    # -- networks (raw observations in) ---------------------------------------------------------
    def B(self, obs: torch.Tensor) -> torch.Tensor:
        return project_to_sphere(self.backward_map(self.normalize(obs).unsqueeze(0))[0])

    def F(self, obs: torch.Tensor, action: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.forward_map(self.normalize(obs), action, z)

    # -- protocol -------------------------------------------------------------------------------
    def reward_embedding(self, next_obs, rewards):
        # E[r(s) B(s)]: with E[B B^T] = I, F(s, a, z)^T of it estimates Q in the reward's own units.
        rewards = check_reward_samples(next_obs, rewards).to(next_obs.dtype)
        return check_reward_embedding((rewards * self.B(next_obs)).mean(0))


class FBTrainer:
    """Optimisers and target networks around an :class:`FBModel`; ``update(batch) -> metrics``.

    The trainer runs on the model's device (the generator must live there too). ``update`` never reads
    a value back to the host: its metrics are 0-dim device tensors, so a CUDA graph can capture it.
    """

    def __init__(self, model: FBModel, config: FBTrainConfig, generator: torch.Generator):
        self.model, self.config, self.generator = model, config, generator
        self.device = model.obs_mean.device
        model.train()
        model.requires_grad_(True)
        self.target_forward = copy.deepcopy(model.forward_map).requires_grad_(False)
        self.target_backward = copy.deepcopy(model.backward_map).requires_grad_(False)
        self.fb_optimizer = torch.optim.Adam(
            [
                {"params": model.forward_map.parameters(), "lr": config.lr_f},
                {"params": model.backward_map.parameters(), "lr": config.lr_b},
            ],
            **adam_options(self.device),
        )
        self.actor_optimizer = torch.optim.Adam(model.actor.parameters(), lr=config.lr_actor, **adam_options(self.device))
        self.identity = torch.eye(model.z_dim, device=self.device)

    def modules(self) -> dict[str, nn.Module]:
        return {"target_forward": self.target_forward, "target_backward": self.target_backward}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"fb": self.fb_optimizer, "actor": self.actor_optimizer}

    def sample_batch(self, data) -> dict[str, torch.Tensor]:
        return data.sample(self.config.batch_size, self.generator)

    def sample_training_z(self, next_obs: torch.Tensor) -> torch.Tensor:
        n = next_obs.shape[0]
        z = self.model.sample_z(n, self.generator)
        from_data = torch.rand(n, generator=self.generator, device=self.device) < self.config.mix_ratio
        perm = torch.randperm(n, generator=self.generator, device=self.device)
        with torch.no_grad():
            z_data = self.model.B(next_obs[perm])
        return torch.where(from_data.unsqueeze(-1), z_data, z)

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        cfg, model = self.config, self.model
        obs, action, next_obs, discount = batch["obs"], batch["action"], batch["next_obs"], batch["discount"]
        z = self.sample_training_z(next_obs)

        with torch.no_grad():
            next_action = model.act(next_obs, z, mean=False, generator=self.generator, noise=cfg.actor_noise, clip=cfg.noise_clip)
            next_obs_n = model.normalize(next_obs)
            target_F = self.target_forward(next_obs_n, next_action, z)
            target_B = project_to_sphere(self.target_backward(next_obs_n.unsqueeze(0))[0])
            target_M = aggregate(target_F @ target_B.T, cfg.target_pessimism)

        F = model.F(obs, action, z)
        B = model.B(next_obs)
        M = F @ B.T
        loss_fb, metrics = fb_loss(M, target_M, cfg.discount * discount)
        loss_ortho, ortho_metrics = orthonormality_loss(B)
        loss = loss_fb + cfg.ortho_coef * loss_ortho
        self.fb_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.fb_optimizer.step()

        action_pi = model.act(obs, z, mean=False, generator=self.generator, noise=cfg.actor_noise, clip=cfg.noise_clip)
        # F only passes the gradient to the action here: skip its weight gradients.
        model.forward_map.requires_grad_(False)
        Q = (model.F(obs, action_pi, z) * z).sum(-1)
        loss_actor, actor_metrics = actor_loss(Q, cfg.actor_pessimism)
        self.actor_optimizer.zero_grad(set_to_none=True)
        loss_actor.backward()
        self.actor_optimizer.step()
        model.forward_map.requires_grad_(True)

        soft_update(self.target_forward, model.forward_map, cfg.tau)
        soft_update(self.target_backward, model.backward_map, cfg.tau)
        with torch.no_grad():
            # E[B B^T] should approach the identity (|B|^2 = d makes its trace d already).
            cov_error = B.T @ B / B.shape[0] - self.identity
            metrics.update(ortho_metrics)
            metrics.update(actor_metrics)
            metrics.update(
                fb_loss=loss_fb.detach(),
                ortho_loss=loss_ortho.detach(),
                actor_loss=loss_actor.detach(),
                target_M=target_M.mean(),
                orth_linf=cov_error.abs().max(),
                orth_l2=cov_error.norm() / model.z_dim**0.5,
            )
        return metrics
