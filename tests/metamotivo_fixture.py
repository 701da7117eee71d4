"""Meta Motivo checkpoint folders with random weights: their config.json fields and state-dict key names,
for testing the loader without the real weights."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from fastbfm.bfm.nn import EnsembleLayerNorm
from fastbfm.interop.metamotivo import MetaMotivoFB
from fastbfm.interop.metamotivo.config import _TOP_DEFAULTS, CONFIG, WEIGHTS
from fastbfm.interop.metamotivo.networks import forward_map


def _discriminator(obs_dim: int, z_dim: int, hidden_dim: int, hidden_layers: int) -> nn.Module:
    """FB-CPR's discriminator layout (``trunk``), only for writing test checkpoints."""
    layers = [nn.Linear(obs_dim + z_dim, hidden_dim), nn.LayerNorm(hidden_dim), nn.Tanh()]
    for _ in range(hidden_layers - 1):
        layers += [nn.Linear(hidden_dim, hidden_dim), nn.ReLU()]
    module = nn.Module()
    module.trunk = nn.Sequential(*layers, nn.Linear(hidden_dim, 1))
    return module


def write_random_checkpoint(
    folder: str | Path,
    obs_dim: int,
    action_dim: int,
    z_dim: int,
    hidden_dim: int = 64,
    backward_hidden_dim: int = 32,
    *,
    archi: str = "simple",
    hidden_layers: int = 1,
    embedding_layers: int = 2,
    backward_hidden_layers: int = 2,
    num_parallel: int = 2,
    ensemble_mode: str = "batch",
    norm_obs: bool = True,
    fb_cpr: bool = False,
    agent_layout: bool = False,
    discount: float = 0.98,
    seed: int = 0,
) -> Path:
    """Write a Meta Motivo checkpoint folder with random weights, for testing without the real weights.

    Their config.json fields and state-dict key names; ``fb_cpr`` adds a critic and a discriminator,
    ``agent_layout`` writes an agent's save (root config.json with ``train.discount``, weights and model
    config under ``model/``, target networks included) instead of the published layout.
    """
    net = {
        "hidden_dim": hidden_dim,
        "model": archi,
        "hidden_layers": hidden_layers,
        "embedding_layers": embedding_layers,
    }
    forward = {**net, "num_parallel": num_parallel, "ensemble_mode": ensemble_mode}
    archi_cfg: dict = {
        "z_dim": z_dim,
        "norm_z": True,
        "f": forward,
        "b": {"hidden_dim": backward_hidden_dim, "hidden_layers": backward_hidden_layers, "norm": True},
        "actor": net,
    }
    if fb_cpr:
        archi_cfg["critic"] = dict(forward)
        archi_cfg["discriminator"] = {"hidden_dim": hidden_dim, "hidden_layers": 2}
    config = {
        "obs_dim": obs_dim,
        "action_dim": action_dim,
        "device": "cpu",
        "archi": archi_cfg,
        **{k: v for k, v in _TOP_DEFAULTS.items() if k != "device"},
    }
    config["norm_obs"] = norm_obs

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = MetaMotivoFB(config)
        # Non-trivial LayerNorm affines and normaliser statistics, so that tests see them applied.
        for m in model.modules():
            if isinstance(m, (nn.LayerNorm, EnsembleLayerNorm)):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
        if norm_obs:
            model._obs_normalizer.running_mean.normal_(0, 0.5)
            model._obs_normalizer.running_var.uniform_(0.5, 2.0)
            model._obs_normalizer.num_batches_tracked.fill_(1000)
        tensors = dict(model.state_dict())
        extras: dict[str, nn.Module] = {}
        if fb_cpr:
            extras["_critic"] = forward_map(obs_dim, action_dim, z_dim, model.config["archi"]["f"], 1)
            extras["_discriminator"] = _discriminator(obs_dim, z_dim, hidden_dim, 2)
        if agent_layout:
            extras["_target_backward_map"] = model._backward_map
            extras["_target_forward_map"] = model._forward_map
            if fb_cpr:
                extras["_target_critic"] = extras["_critic"]
        for prefix, module in extras.items():
            tensors.update({f"{prefix}.{k}": v for k, v in module.state_dict().items()})
    tensors = {k: v.detach().clone().contiguous() for k, v in tensors.items()}

    root = Path(folder)
    weights_dir = root / "model" if agent_layout else root
    weights_dir.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(weights_dir / WEIGHTS))
    (weights_dir / CONFIG).write_text(json.dumps(config, indent=4))
    if agent_layout:
        agent = {"model": config, "train": {"discount": discount}, "cudagraphs": False, "compile": False}
        (root / CONFIG).write_text(json.dumps(agent, indent=4))
    return root
