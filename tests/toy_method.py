"""A toy adaptation method, written as a user adds one: a config and an adapter in one module, and one
registry line (``TOY`` below; ``test_adapt_methods.py`` registers it)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from fastbfm.adapt.adapter import Adapter
from fastbfm.adapt.methods import Method, MethodOptions


@dataclass(frozen=True)
class ToyConfig:
    episodes: int = 20
    eval_episodes: int = 10
    eval_every: float = 0.0
    sigma: float = 0.1
    method_name = "toy"


class ToyHillClimb(Adapter):
    """One episode per round: the zero-shot latent first, then a perturbation of the best latent so far,
    kept when its episode return beats the best's."""

    label = "toy"

    def __init__(self, model, prompt, config: ToyConfig, seed: int, episode_length: int):
        super().__init__(model, seed, rollouts=1, shared_start=True)
        self.config, self.horizon = config, episode_length
        self.generator = torch.Generator().manual_seed(seed)
        self.best, self.best_return, self.z, self.ret = prompt.z.clone(), -np.inf, None, None

    def propose(self, start_obs):
        step = 0 if np.isinf(self.best_return) else self.config.sigma
        self.z = self.model.project(self.best + step * torch.randn(self.model.z_dim, generator=self.generator)).unsqueeze(0)

    def rollout_latents(self, t):
        return self.z

    def observe(self, obs, actions, rewards, next_obs):
        self.ret = float(rewards.sum())

    def update(self):
        if self.ret > self.best_return:
            self.best, self.best_return = self.z[0].clone(), self.ret

    def current_latent(self):
        return self.best


def toy_config(options: MethodOptions) -> ToyConfig:
    return ToyConfig(**options.budget, **options.given(sigma="sigma"))


TOY = Method("toy", "Toy hill climb", ToyHillClimb, toy_config, "a hill climb over latents, one episode per step")
