"""Building blocks: ensembles as one batched layer (a leading member axis), and the FB-style MLPs."""

from __future__ import annotations

import math

import torch
from torch import nn


class EnsembleLinear(nn.Module):
    """K independent linear layers applied in one ``baddbmm``: (K, N, in) -> (K, N, out)."""

    def __init__(self, in_features: int, out_features: int, ensemble_size: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(ensemble_size, in_features, out_features))
        self.bias = nn.Parameter(torch.empty(ensemble_size, 1, out_features))
        bound = 1 / math.sqrt(in_features)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight)


def orthogonal_init_(module: nn.Module, gain: float) -> None:
    """Every :class:`EnsembleLinear` in ``module``: orthogonal weights per member, scaled by ``gain``,
    and zero biases (Meta Motivo's initialisation; measured against the uniform default in docs/bfms.md,
    "Parity with Meta Motivo")."""
    for layer in module.modules():
        if isinstance(layer, EnsembleLinear):
            with torch.no_grad():
                for member in layer.weight:
                    nn.init.orthogonal_(member, gain)
                layer.bias.zero_()


class EnsembleLayerNorm(nn.Module):
    def __init__(self, features: int, ensemble_size: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ensemble_size, 1, features))
        self.bias = nn.Parameter(torch.zeros(ensemble_size, 1, features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.float32:  # float32 as before bf16 training existed, bit for bit
            return nn.functional.layer_norm(x, x.shape[-1:]) * self.weight + self.bias
        # bf16 activations stay bf16 (autocast's policy would run layer_norm in float32): its statistics
        # are accumulated in float32 either way and the next matmul rounds to bf16 anyway
        with torch.autocast(x.device.type, enabled=False):
            normed = nn.functional.layer_norm(x, x.shape[-1:])
            return torch.addcmul(self.bias.to(x.dtype), normed, self.weight.to(x.dtype))


class LowPrecisionNetwork:
    """A network whose forward may run under autocast at ``compute_dtype`` (bf16 training), with its
    parameters, gradients and optimiser state in float32 and its output returned in float32, so that
    what is computed from network outputs (the FB measure matrices, losses, covariances) stays float32.
    None (the default, and always for inference): plain float32."""

    compute_dtype: torch.dtype | None = None

    def run_at_compute_dtype(self, forward, *inputs: torch.Tensor) -> torch.Tensor:
        if self.compute_dtype is None:
            return forward(*inputs)
        # no weight-cast cache: a CUDA graph must recast the weights it updates at every replay
        with torch.autocast(inputs[0].device.type, dtype=self.compute_dtype, cache_enabled=False):
            out = forward(*inputs)
        return out.float()


def set_compute_dtype(module: nn.Module, dtype: torch.dtype | None) -> None:
    """Run every outermost :class:`LowPrecisionNetwork` inside ``module`` at ``dtype`` (None: float32).
    The networks nested in one run inside its autocast region, so they are left alone."""
    if isinstance(module, LowPrecisionNetwork):
        module.compute_dtype = dtype
        return
    for child in module.children():
        set_compute_dtype(child, dtype)


class MLP(LowPrecisionNetwork, nn.Sequential):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.run_at_compute_dtype(super().forward, x)


def mlp(in_dim: int, hidden: list[int], out_dim: int, ensemble_size: int, norm_tanh_first: bool = True) -> MLP:
    """Linear layers with ReLU, the first followed by LayerNorm + tanh (the FB codebases' "ntanh" input)."""
    layers: list[nn.Module] = []
    dims = [in_dim, *hidden]
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(EnsembleLinear(a, b, ensemble_size))
        if i == 0 and norm_tanh_first:
            layers += [EnsembleLayerNorm(b, ensemble_size), nn.Tanh()]
        else:
            layers.append(nn.ReLU())
    layers.append(EnsembleLinear(dims[-1], out_dim, ensemble_size))
    return MLP(*layers)


def expand(x: torch.Tensor, ensemble_size: int) -> torch.Tensor:
    """(N, D) -> (K, N, D) without copying."""
    return x.unsqueeze(0).expand(ensemble_size, *x.shape)


def project_to_sphere(z: torch.Tensor) -> torch.Tensor:
    """Project onto the sphere of radius sqrt(d), where all FB latents live."""
    return math.sqrt(z.shape[-1]) * nn.functional.normalize(z, dim=-1)


class TwoStreamNet(LowPrecisionNetwork, nn.Module):
    """FB's forward map and actor: embed (obs, x) and (obs, z) separately, concatenate, then a head.

    Output (K, N, out_dim) for an ensemble of K members.
    """

    def __init__(self, obs_dim: int, x_dim: int, z_dim: int, hidden: int, out_dim: int, ensemble_size: int):
        super().__init__()
        self.ensemble_size = ensemble_size
        self.embed_x = mlp(obs_dim + x_dim, [hidden], hidden // 2, ensemble_size)
        self.embed_z = mlp(obs_dim + z_dim, [hidden], hidden // 2, ensemble_size)
        self.head = mlp(hidden, [hidden], out_dim, ensemble_size, norm_tanh_first=False)

    def forward(self, obs: torch.Tensor, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.run_at_compute_dtype(self._forward, obs, x, z)

    def _forward(self, obs: torch.Tensor, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        k = self.ensemble_size
        ex = self.embed_x(expand(torch.cat([obs, x], -1), k))
        ez = self.embed_z(expand(torch.cat([obs, z], -1), k))
        return self.head(torch.relu(torch.cat([ex, ez], -1)))


def polyak(target: list[torch.Tensor], online: list[torch.Tensor], tau: float) -> None:
    """Polyak averaging: target <- (1 - tau) target + tau online, tensor by tensor."""
    with torch.no_grad():
        torch._foreach_lerp_(target, online, tau)


def soft_update(target: nn.Module, online: nn.Module, tau: float) -> None:
    """Polyak averaging of a target network's parameters towards the online network's."""
    polyak(list(target.parameters()), list(online.parameters()), tau)
