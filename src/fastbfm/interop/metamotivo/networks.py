"""Meta Motivo's networks rebuilt under their parameter names, so that their state dict loads with ``strict=True``."""

from __future__ import annotations

import torch
from torch import nn

from fastbfm.bfm.nn import EnsembleLayerNorm, EnsembleLinear, project_to_sphere
from fastbfm.interop.metamotivo.config import Net

def _linear(i: int, o: int, k: int) -> nn.Module:
    # Ensembles hold (K, in, out) weights and (K, 1, out) biases, a single net nn.Linear's layout.
    return EnsembleLinear(i, o, k) if k > 1 else nn.Linear(i, o)


def _layer_norm(d: int, k: int) -> nn.Module:
    return EnsembleLayerNorm(d, k) if k > 1 else nn.LayerNorm(d)


class _Block(nn.Module):
    """Residual archi unit: LayerNorm, Linear, optional Mish; with a skip connection if ``residual``."""

    def __init__(self, i: int, o: int, k: int, activation: bool = True, residual: bool = False):
        super().__init__()
        self.residual = residual
        self.mlp = nn.Sequential(_layer_norm(i, k), _linear(i, o, k), *([nn.Mish()] if activation else []))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.mlp(x) if self.residual else self.mlp(x)


def _embedding(net: Net, in_dim: int, k: int) -> nn.Sequential:
    """Input -> hidden_dim // 2 over ``embedding_layers`` layers."""
    h, extra = net.hidden_dim, net.embedding_layers - 2
    if net.model == "residual":
        return nn.Sequential(
            _Block(in_dim, h, k), *[_Block(h, h, k, residual=True) for _ in range(extra)], _Block(h, h // 2, k)
        )
    layers = [_linear(in_dim, h, k), _layer_norm(h, k), nn.Tanh()]
    for _ in range(extra):
        layers += [_linear(h, h, k), nn.ReLU()]
    return nn.Sequential(*layers, _linear(h, h // 2, k), nn.ReLU())


def _head(net: Net, out_dim: int, k: int) -> nn.Sequential:
    """The two concatenated embeddings (hidden_dim wide) -> out_dim."""
    h = in_dim = net.hidden_dim
    if net.model == "residual":
        return nn.Sequential(
            *[_Block(h, h, k, residual=True) for _ in range(net.hidden_layers)], _Block(h, out_dim, k, activation=False)
        )
    layers: list[nn.Module] = []
    for _ in range(net.hidden_layers):
        layers += [_linear(in_dim, h, k), nn.ReLU()]
        in_dim = h
    return nn.Sequential(*layers, _linear(in_dim, out_dim, k))


class _ForwardNet(nn.Module):
    """F(s, a, z) as K members in one batched net: embed (s, z) and (s, a), concatenate (s, a) first."""

    def __init__(self, obs_dim: int, action_dim: int, z_dim: int, net: Net, out_dim: int, k: int):
        super().__init__()
        self.k = k
        self.embed_z = _embedding(net, obs_dim + z_dim, k)
        self.embed_sa = _embedding(net, obs_dim + action_dim, k)
        self.Fs = _head(net, out_dim, k)

    def forward(self, obs: torch.Tensor, action: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        sz, sa = torch.cat([obs, z], -1), torch.cat([obs, action], -1)
        if self.k > 1:
            sz, sa = sz.expand(self.k, *sz.shape), sa.expand(self.k, *sa.shape)
        out = self.Fs(torch.cat([self.embed_sa(sa), self.embed_z(sz)], -1))
        return out if self.k > 1 else out.unsqueeze(0)


class _SequentialForward(nn.Module):
    """Meta Motivo's ``ensemble_mode="seq"``: K separate single nets under ``models.<k>``."""

    def __init__(self, obs_dim: int, action_dim: int, z_dim: int, net: Net, out_dim: int):
        super().__init__()
        self.models = nn.ModuleList(
            _ForwardNet(obs_dim, action_dim, z_dim, net, out_dim, 1) for _ in range(net.num_parallel)
        )

    def forward(self, obs: torch.Tensor, action: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return torch.cat([m(obs, action, z) for m in self.models], 0)


def forward_map(obs_dim: int, action_dim: int, z_dim: int, net: Net, out_dim: int) -> nn.Module:
    if net.ensemble_mode == "seq":
        return _SequentialForward(obs_dim, action_dim, z_dim, net, out_dim)
    return _ForwardNet(obs_dim, action_dim, z_dim, net, out_dim, net.num_parallel)


class ActorNet(nn.Module):
    """Mean action tanh(policy([embed_s(s), embed_z(s, z)]))."""

    def __init__(self, obs_dim: int, z_dim: int, action_dim: int, net: Net):
        super().__init__()
        self.embed_z = _embedding(net, obs_dim + z_dim, 1)
        self.embed_s = _embedding(net, obs_dim, 1)
        self.policy = _head(net, action_dim, 1)

    def forward(self, obs: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.policy(torch.cat([self.embed_s(obs), self.embed_z(torch.cat([obs, z], -1))], -1)))


class BackwardNet(nn.Module):
    def __init__(self, obs_dim: int, z_dim: int, hidden_dim: int, hidden_layers: int, norm: bool):
        super().__init__()
        self.norm = norm
        layers = [nn.Linear(obs_dim, hidden_dim), nn.LayerNorm(hidden_dim), nn.Tanh()]
        for _ in range(hidden_layers - 1):
            layers += [nn.Linear(hidden_dim, hidden_dim), nn.ReLU()]
        self.net = nn.Sequential(*layers, nn.Linear(hidden_dim, z_dim))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        out = self.net(obs)
        return project_to_sphere(out) if self.norm else out


class ObsNormalizer(nn.Module):
    """BatchNorm1d(affine=False) in evaluation mode, with its buffer names; never updates its statistics."""

    def __init__(self, obs_dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.register_buffer("running_mean", torch.zeros(obs_dim))
        self.register_buffer("running_var", torch.ones(obs_dim))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return (obs - self.running_mean) / torch.sqrt(self.running_var + self.eps)
