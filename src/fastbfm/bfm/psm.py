"""PSM: proto successor measures (Agarwal, Sikchi, Stone & Zhang, ICML 2025, arXiv 2411.19418).

The paper's idea: every policy's successor measure is affine in one policy-independent basis,
M^pi(s, a, s+) = Phi(s, a, s+) w^pi + b, learnt from the successor measures of a codebook of
deterministic policies (so no actor is needed while learning the basis). fastbfm's instantiation:

- basis: phi(s+) on the sqrt(d) sphere (the model's feature network), with a forward map
  F(s, a, c) per codebook policy c: M^{pi_c}(s, a, s+) = F(s, a, c)^T phi(s+), fitted by the
  forward-backward TD loss (``fb_loss``) and orthonormality of phi, the targets bootstrapping with the
  codebook policy's own action a' = pi_c(s') — a policy evaluation, not FB's self-improvement;
- codebook: c in {-1, +1}^m (m = 16 bits: 65536 policies), pi_c(s) = tanh(g * rff(s)^T W_c) with
  fixed random Fourier features rff of the normalised state and W_c = sum_j c_j P_j for fixed random
  matrices P_j: smooth, deterministic, state-dependent behaviours (the paper hashes discrete states;
  hashing continuous states would give white-noise actions whose measures all look alike);
- the reward-conditioned part is the successor-feature stage of ``sf.py`` on phi(s') (not centred),
  and inference is the linear regression of rewards on phi.

Deviations, written down: no bias b (the affine offset) and no linear-programme inference (the dual
with the constraint Phi w + b >= 0); the closed-form regression is used as in the author release as
described second-hand (anchors.md section 5); the author code was not available to read.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import nn

from fastbfm.bfm.device import adam_options
from fastbfm.bfm.losses import aggregate, fb_loss, orthonormality_loss
from fastbfm.bfm.nn import TwoStreamNet, project_to_sphere, soft_update
from fastbfm.bfm.sf import SFModel, SFTrainConfig, SuccessorFeatureTrainer


@dataclass(frozen=True)
class PSMTrainConfig(SFTrainConfig):
    lr_phi: float = 1e-4
    lr_proto: float = 1e-4
    ortho_coef: float = 1.0
    proto_pessimism: float = 0.0
    code_bits: int = 16
    codebook_features: int = 64
    codebook_bandwidth: float = 1.0
    """Frequency scale of the random Fourier features on normalised states: higher, more wiggly policies."""
    codebook_gain: float = 3.0


class Codebook(nn.Module):
    """Deterministic policies pi_c(s) = tanh(gain * rff(s)^T sum_j c_j P_j), c in {-1, +1}^bits."""

    def __init__(self, obs_dim: int, action_dim: int, config: PSMTrainConfig, generator: torch.Generator):
        super().__init__()
        k, m = config.codebook_features, config.code_bits
        self.gain = config.codebook_gain
        device = generator.device
        self.register_buffer("frequencies", config.codebook_bandwidth * torch.randn(obs_dim, k, generator=generator, device=device))
        self.register_buffer("phases", 2 * math.pi * torch.rand(k, generator=generator, device=device))
        self.register_buffer(
            "projections", torch.randn(m, k, action_dim, generator=generator, device=device) / math.sqrt(m * k / 2)
        )

    def sample_codes(self, n: int, generator: torch.Generator) -> torch.Tensor:
        m = self.projections.shape[0]
        return torch.randint(0, 2, (n, m), generator=generator, device=self.projections.device).float() * 2 - 1

    def act(self, normalized_obs: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        rff = torch.cos(normalized_obs @ self.frequencies + self.phases)
        weights = torch.einsum("nm,mka->nka", codes, self.projections)
        return torch.tanh(self.gain * torch.einsum("nk,nka->na", rff, weights))


class PSMTrainer(SuccessorFeatureTrainer):
    def __init__(self, model: SFModel, config: PSMTrainConfig, generator: torch.Generator):
        super().__init__(model, config, generator)
        c = model.config
        self.codebook = Codebook(c.obs_dim, c.action_dim, config, generator)
        self.proto_forward = TwoStreamNet(c.obs_dim, c.action_dim, config.code_bits, c.hidden_dim, c.z_dim, c.ensemble_size).to(self.device)
        self.target_proto_forward = copy.deepcopy(self.proto_forward).requires_grad_(False)
        self.target_feature_map = copy.deepcopy(model.feature_map).requires_grad_(False)
        self.proto_optimizer = torch.optim.Adam(
            [
                {"params": self.proto_forward.parameters(), "lr": config.lr_proto},
                {"params": model.feature_map.parameters(), "lr": config.lr_phi},
            ],
            **adam_options(self.device),
        )

    def modules(self):
        return {
            **super().modules(),
            "codebook": self.codebook,
            "proto_forward": self.proto_forward,
            "target_proto_forward": self.target_proto_forward,
            "target_feature_map": self.target_feature_map,
        }

    def optimizers(self):
        return {**super().optimizers(), "proto": self.proto_optimizer}

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        cfg, model = self.config, self.model
        obs, action, next_obs, discount = batch["obs"], batch["action"], batch["next_obs"], batch["discount"]
        codes = self.codebook.sample_codes(len(obs), self.generator)
        obs_n, next_obs_n = model.normalize(obs), model.normalize(next_obs)
        with torch.no_grad():
            next_action = self.codebook.act(next_obs_n, codes)
            target_F = self.target_proto_forward(next_obs_n, next_action, codes)
            target_phi = project_to_sphere(self.target_feature_map(next_obs_n.unsqueeze(0))[0])
            target_M = aggregate(target_F @ target_phi.T, cfg.proto_pessimism)
        phi = model.raw_features(next_obs)
        M = self.proto_forward(obs_n, action, codes) @ phi.T
        loss_proto, metrics = fb_loss(M, target_M, cfg.discount * discount)
        loss_ortho, ortho_metrics = orthonormality_loss(phi)
        self.proto_optimizer.zero_grad(set_to_none=True)
        (loss_proto + cfg.ortho_coef * loss_ortho).backward()
        self.proto_optimizer.step()
        soft_update(self.target_proto_forward, self.proto_forward, cfg.tau)
        soft_update(self.target_feature_map, model.feature_map, cfg.tau)

        with torch.no_grad():
            raw_next = model.raw_features(next_obs)
            self.track_feature_statistics(raw_next, centre=False)
            cov_error = raw_next.T @ raw_next / len(raw_next) - self.identity
        metrics.update(ortho_metrics)
        # PSM's features are used uncentred: the basis is orthonormal under the data distribution.
        metrics.update(self.update_successor_features(batch, raw_next))
        metrics.update(
            proto_loss=loss_proto.detach(),
            ortho_loss=loss_ortho.detach(),
            target_M=target_M.mean(),
            orth_linf=cov_error.abs().max(),
            orth_l2=cov_error.norm() / model.z_dim**0.5,
        )
        return metrics
