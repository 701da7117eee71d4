"""Inference on a device behind the protocol's CPU interface.

Rollouts, relabelling and every adaptation method hold their tensors on the CPU (observations come from
MuJoCo as NumPy arrays; their seeded generators are CPU generators, so a seed gives the same draws on
any device). :func:`place` puts a model's networks on a device and wraps it so that each protocol call
moves its tensor arguments there and its results back: the adaptation methods still see only the
protocol, and on the CPU nothing changes at all.
"""

from __future__ import annotations

import torch
from torch import nn

from fastbfm.bfm.protocol import BFM


def _to(value, device: torch.device):
    return value.to(device) if isinstance(value, torch.Tensor) else value


class OnDevice(nn.Module):
    """A BFM whose networks live on ``device``; tensors in and out of the protocol stay on the CPU.

    A module itself, so that ``deepcopy``, ``parameters()``, ``requires_grad_`` and optimisers (fine-tuning
    trains copies of the networks) act on the wrapped networks; gradients flow through the moves. Other
    attributes (``obs_dim``, ``meta``, ``config``, ...) are the wrapped model's.
    """

    def __init__(self, model: nn.Module, device: torch.device):
        super().__init__()
        self.model = model.to(device)
        self.device = device

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._modules["model"], name)

    def _call(self, method: str, *args, **kwargs):
        args = [_to(a, self.device) for a in args]
        kwargs = {k: _to(v, self.device) for k, v in kwargs.items()}
        out = getattr(self.model, method)(*args, **kwargs)
        return out.cpu() if isinstance(out, torch.Tensor) else out

    def act(self, obs, z, mean: bool = True, generator: torch.Generator | None = None):
        # exploration noise (mean=False) needs a generator on the model's device
        return self._call("act", obs, z, mean=mean, generator=generator)

    def features(self, obs):
        return self._call("features", obs)

    def successor_features(self, obs, action, z):
        return self._call("successor_features", obs, action, z)

    def q_value(self, obs, action, z, z_reward, pessimism: float = 0.5):
        return self._call("q_value", obs, action, z, z_reward, pessimism)

    def reward_embedding(self, next_obs, rewards):
        return self._call("reward_embedding", next_obs, rewards)

    def infer_from_rewards(self, next_obs, rewards):
        return self._call("infer_from_rewards", next_obs, rewards)

    def infer_from_goal(self, goal):
        return self._call("infer_from_goal", goal)

    def project(self, z):
        return self._call("project", z)

    def sample_z(self, n: int, generator: torch.Generator | None = None):
        # drawn on the CPU (where callers' generators live), projected on the device
        return self.project(torch.randn(n, self.model.z_dim, generator=generator))


def place(model: BFM, device: torch.device | str) -> BFM:
    """``model`` with its networks on ``device``: unchanged on the CPU (bit-identical results), else wrapped
    in :class:`OnDevice`. A model already placed is unwrapped first."""
    device = torch.device(device)
    if isinstance(model, OnDevice):
        model = model.model
    if device.type == "cpu":
        return model.to(device) if isinstance(model, nn.Module) else model
    return OnDevice(model, device)
