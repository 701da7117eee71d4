"""HILP: Hilbert foundation policies (Park, Kreiman & Levine, ICML 2024), zero-shot variant.

phi is learnt so that V(s, g) = -|phi(s) - phi(g)| is the goal-conditioned value of reaching g (reward
-1 per step, IQL expectile regression with two value networks and target copies; anchors.md 0.3). The
successor-feature stage then uses phi(s') minus its running mean as features ('state' features, the
HILP default, rather than 'diff' phi(s') - phi(s)); phi1 is the model's feature network, phi2 and the
targets live in the trainer.

Choices: goals are future states of the same episode at a Geometric(1 - 0.99) offset, cut at the
episode's end (fastbfm's locomotion datasets are 25-step segments, so goals stay within 25 steps), or
with p = 0.375 any dataset state; s = g means |s - g| < 1e-6 (raw observations).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from fastbfm.bfm.device import adam_options
from fastbfm.bfm.losses import hilbert_value_loss
from fastbfm.bfm.nn import mlp, soft_update
from fastbfm.bfm.sf import SFModel, SFTrainConfig, SuccessorFeatureTrainer


@dataclass(frozen=True)
class HILPTrainConfig(SFTrainConfig):
    lr_phi: float = 5e-4
    phi_tau: float = 0.005
    hilbert_discount: float = 0.98
    """gamma of the Hilbert value (HILP: 0.96 on walker, 0.98 elsewhere)."""
    expectile: float = 0.5
    future_discount: float = 0.99
    random_goal_prob: float = 0.375


def hilbert_value(phi_s: torch.Tensor, phi_g: torch.Tensor) -> torch.Tensor:
    """-|phi(s) - phi(g)|, with the square root taken on a value clamped at 1e-6 (finite gradient at 0)."""
    return -(phi_s - phi_g).pow(2).sum(-1).clamp_min(1e-6).sqrt()


class HILPTrainer(SuccessorFeatureTrainer):
    def __init__(self, model: SFModel, config: HILPTrainConfig, generator: torch.Generator):
        super().__init__(model, config, generator)
        c = model.config
        self.second_feature_map = mlp(c.obs_dim, [c.feature_hidden_dim] * 2, c.z_dim, ensemble_size=1).to(self.device)
        self.target_feature_maps = copy.deepcopy(torch.nn.ModuleList([model.feature_map, self.second_feature_map]))
        self.target_feature_maps.requires_grad_(False)
        self.phi_optimizer = torch.optim.Adam(
            [*model.feature_map.parameters(), *self.second_feature_map.parameters()], lr=config.lr_phi, **adam_options(self.device)
        )

    def modules(self):
        return {**super().modules(), "second_feature_map": self.second_feature_map, "target_feature_maps": self.target_feature_maps}

    def optimizers(self):
        return {**super().optimizers(), "phi": self.phi_optimizer}

    def sample_batch(self, data):
        cfg = self.config
        return data.sample_with_goals(cfg.batch_size, self.generator, cfg.future_discount, cfg.random_goal_prob)

    def _phis(self, maps, x: torch.Tensor) -> torch.Tensor:
        x = self.model.normalize(x).unsqueeze(0)
        return torch.stack([m(x)[0] for m in maps])

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        cfg, model = self.config, self.model
        obs, next_obs, goal = batch["obs"], batch["next_obs"], batch["goal"]
        online = [model.feature_map, self.second_feature_map]
        reached = (obs - goal).norm(dim=-1) < 1e-6
        with torch.no_grad():
            target_goal = self._phis(self.target_feature_maps, goal)
            target_next = hilbert_value(self._phis(self.target_feature_maps, next_obs), target_goal)
            target_now = hilbert_value(self._phis(self.target_feature_maps, obs), target_goal)
        value = hilbert_value(self._phis(online, obs), self._phis(online, goal))
        loss_phi, metrics = hilbert_value_loss(value, target_next, target_now, reached, cfg.hilbert_discount, cfg.expectile)
        self.phi_optimizer.zero_grad(set_to_none=True)
        loss_phi.backward()
        self.phi_optimizer.step()
        soft_update(self.target_feature_maps, torch.nn.ModuleList(online), cfg.phi_tau)

        with torch.no_grad():
            raw_next = model.raw_features(next_obs)
            self.track_feature_statistics(raw_next, centre=True)
        metrics.update(self.update_successor_features(batch, raw_next - model.feature_mean))
        metrics["phi_loss"] = loss_phi.detach()
        return metrics
