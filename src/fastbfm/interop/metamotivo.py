"""Meta Motivo (facebookresearch/metamotivo) FB and FB-CPR checkpoints behind fastbfm's BFM protocol.

    from fastbfm.interop.metamotivo import load_metamotivo
    model = load_metamotivo("path/to/metamotivo-S-1")   # config.json + model.safetensors

A checkpoint folder is either the published layout (``config.json`` and ``model.safetensors`` side by
side, as on the Hugging Face hub) or the layout Meta Motivo's agents save (an agent ``config.json`` at
the root and ``model/config.json`` + ``model/model.safetensors``). Weights are read with safetensors only,
never with pickle (``optimizers.pth`` is not opened).

:class:`MetaMotivoFB` rebuilds the networks from Meta Motivo's model config (``archi.f``, ``archi.b``,
``archi.actor``: "simple" or "residual" forward map and actor, "batch" or "seq" ensembles) under their
parameter names, so their state dict loads with ``strict=True``. Observations go through their
observation normaliser (BatchNorm statistics, evaluation mode) when ``norm_obs`` is set.

Supported: the FB model and the FB parts (forward map, backward map, actor, normaliser) of an FB-CPR
model. FB-CPR's critic and discriminator, and the target networks an agent's save includes, are not
used by the protocol: their weights are skipped (listed in ``model.meta["ignored"]``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from fastbfm.bfm.nn import EnsembleLayerNorm, EnsembleLinear, project_to_sphere
from fastbfm.bfm.protocol import ForwardBackwardInference
from fastbfm.errors import FastBFMError
from fastbfm.schemas import MAX_DIM, MAX_ENSEMBLE, MAX_HIDDEN, MAX_LATENT, MAX_LAYERS

WEIGHTS, CONFIG = "model.safetensors", "config.json"
ARCHIS = ("simple", "residual")
ENSEMBLE_MODES = ("batch", "seq")
# Top-level modules of Meta Motivo's FBModel / FBcprModel state dict: the ones used, and the ones skipped.
USED_PREFIXES = ("_backward_map.", "_forward_map.", "_actor.", "_obs_normalizer.")
SKIPPED_PREFIXES = ("_critic.", "_discriminator.", "_target_backward_map.", "_target_forward_map.", "_target_critic.")

# Meta Motivo's config dataclass defaults: their loader fills absent fields with these.
_TOP_DEFAULTS = {"device": "cpu", "inference_batch_size": 500_000, "seq_length": 1, "actor_std": 0.2, "norm_obs": True}
_FORWARD_DEFAULTS = {
    "hidden_dim": 1024,
    "model": "simple",
    "hidden_layers": 1,
    "embedding_layers": 2,
    "num_parallel": 2,
    "ensemble_mode": "batch",
}
_ACTOR_DEFAULTS = {"hidden_dim": 1024, "model": "simple", "hidden_layers": 1, "embedding_layers": 2}
_BACKWARD_DEFAULTS = {"hidden_dim": 256, "hidden_layers": 2, "norm": True}


# -- config -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Net:
    hidden_dim: int
    model: str
    hidden_layers: int
    embedding_layers: int
    num_parallel: int = 1
    ensemble_mode: str = "batch"


def _int(value, name: str, minimum: int, maximum: int = MAX_HIDDEN) -> int:
    # bounded above too: the networks are built from these sizes before any weight is read
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise FastBFMError(f"Meta Motivo config: {name} must be an integer from {minimum} to {maximum}, got {value!r}")
    return value


def _section(archi: dict, key: str, defaults: dict) -> dict:
    section = archi.get(key, {})
    if not isinstance(section, dict):
        raise FastBFMError(f"Meta Motivo config: archi.{key} must be an object, got {section!r}")
    return {**defaults, **{k: v for k, v in section.items() if k in defaults}}


def _net(archi: dict, key: str, defaults: dict) -> _Net:
    s = _section(archi, key, defaults)
    if s["model"] not in ARCHIS:
        raise FastBFMError(f"unsupported Meta Motivo archi.{key}.model {s['model']!r}; supported: {', '.join(ARCHIS)}")
    if s.get("ensemble_mode", "batch") not in ENSEMBLE_MODES:
        raise FastBFMError(
            f"unsupported Meta Motivo archi.{key}.ensemble_mode {s['ensemble_mode']!r}; supported: {', '.join(ENSEMBLE_MODES)}"
        )
    if _int(s["hidden_dim"], f"archi.{key}.hidden_dim", 2) % 2:
        # Two embeddings of hidden_dim // 2 feed a hidden_dim-wide head: Meta Motivo needs it even too.
        raise FastBFMError(f"Meta Motivo config: archi.{key}.hidden_dim must be even, got {s['hidden_dim']}")
    return _Net(
        hidden_dim=s["hidden_dim"],
        model=s["model"],
        hidden_layers=_int(s["hidden_layers"], f"archi.{key}.hidden_layers", 0, MAX_LAYERS),
        embedding_layers=_int(s["embedding_layers"], f"archi.{key}.embedding_layers", 2, MAX_LAYERS),
        num_parallel=_int(s.get("num_parallel", 1), f"archi.{key}.num_parallel", 1, MAX_ENSEMBLE),
        ensemble_mode=s.get("ensemble_mode", "batch"),
    )


def normalize_config(raw: dict) -> dict:
    """Meta Motivo's model config (their ``config.json``) with their defaults filled in, validated."""
    if (
        not isinstance(raw, dict)
        or not {"obs_dim", "action_dim", "archi"} <= raw.keys()
        or not isinstance(raw["archi"], dict)
    ):
        raise FastBFMError(
            "unsupported model type: config.json has no obs_dim, action_dim and archi (not a Meta Motivo FB or FB-CPR model config)"
        )
    archi = raw["archi"]
    cfg = {**_TOP_DEFAULTS, **{k: raw[k] for k in _TOP_DEFAULTS if k in raw}}
    cfg["obs_dim"] = _int(raw["obs_dim"], "obs_dim", 1, MAX_DIM)
    cfg["action_dim"] = _int(raw["action_dim"], "action_dim", 1, MAX_DIM)
    cfg["archi"] = {
        "z_dim": _int(archi.get("z_dim", 100), "archi.z_dim", 1, MAX_LATENT),
        "norm_z": bool(archi.get("norm_z", True)),
        "f": _net(archi, "f", _FORWARD_DEFAULTS),
        "b": _section(archi, "b", _BACKWARD_DEFAULTS),
        "actor": _net(archi, "actor", _ACTOR_DEFAULTS),
    }
    cfg["archi"]["b"]["hidden_dim"] = _int(cfg["archi"]["b"]["hidden_dim"], "archi.b.hidden_dim", 1)
    cfg["archi"]["b"]["hidden_layers"] = _int(cfg["archi"]["b"]["hidden_layers"], "archi.b.hidden_layers", 0, MAX_LAYERS)
    cfg["fb_cpr"] = "critic" in archi or "discriminator" in archi
    if not (isinstance(cfg["actor_std"], (int, float)) and cfg["actor_std"] >= 0):
        raise FastBFMError(f"Meta Motivo config: actor_std must be a number >= 0, got {cfg['actor_std']!r}")
    _int(cfg["inference_batch_size"], "inference_batch_size", 1, 10**9)
    return cfg


# -- networks (parameter names follow Meta Motivo's state dict) -------------------------------------


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


def _embedding(net: _Net, in_dim: int, k: int) -> nn.Sequential:
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


def _head(net: _Net, out_dim: int, k: int) -> nn.Sequential:
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

    def __init__(self, obs_dim: int, action_dim: int, z_dim: int, net: _Net, out_dim: int, k: int):
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

    def __init__(self, obs_dim: int, action_dim: int, z_dim: int, net: _Net, out_dim: int):
        super().__init__()
        self.models = nn.ModuleList(
            _ForwardNet(obs_dim, action_dim, z_dim, net, out_dim, 1) for _ in range(net.num_parallel)
        )

    def forward(self, obs: torch.Tensor, action: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return torch.cat([m(obs, action, z) for m in self.models], 0)


def _forward_map(obs_dim: int, action_dim: int, z_dim: int, net: _Net, out_dim: int) -> nn.Module:
    if net.ensemble_mode == "seq":
        return _SequentialForward(obs_dim, action_dim, z_dim, net, out_dim)
    return _ForwardNet(obs_dim, action_dim, z_dim, net, out_dim, net.num_parallel)


class _ActorNet(nn.Module):
    """Mean action tanh(policy([embed_s(s), embed_z(s, z)]))."""

    def __init__(self, obs_dim: int, z_dim: int, action_dim: int, net: _Net):
        super().__init__()
        self.embed_z = _embedding(net, obs_dim + z_dim, 1)
        self.embed_s = _embedding(net, obs_dim, 1)
        self.policy = _head(net, action_dim, 1)

    def forward(self, obs: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.policy(torch.cat([self.embed_s(obs), self.embed_z(torch.cat([obs, z], -1))], -1)))


class _BackwardNet(nn.Module):
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


class _ObsNormalizer(nn.Module):
    """BatchNorm1d(affine=False) in evaluation mode, with its buffer names; never updates its statistics."""

    def __init__(self, obs_dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.register_buffer("running_mean", torch.zeros(obs_dim))
        self.register_buffer("running_var", torch.ones(obs_dim))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return (obs - self.running_mean) / torch.sqrt(self.running_var + self.eps)


def _discriminator(obs_dim: int, z_dim: int, hidden_dim: int, hidden_layers: int) -> nn.Module:
    """FB-CPR's discriminator layout (``trunk``), only for writing test checkpoints."""
    layers = [nn.Linear(obs_dim + z_dim, hidden_dim), nn.LayerNorm(hidden_dim), nn.Tanh()]
    for _ in range(hidden_layers - 1):
        layers += [nn.Linear(hidden_dim, hidden_dim), nn.ReLU()]
    module = nn.Module()
    module.trunk = nn.Sequential(*layers, nn.Linear(hidden_dim, 1))
    return module


# -- the model --------------------------------------------------------------------------------------


class MetaMotivoFB(ForwardBackwardInference, nn.Module):
    """A Meta Motivo FB / FB-CPR model's forward map, backward map, actor and observation normaliser.

    Inference only: evaluation mode, no parameter gradients, network calls under ``torch.no_grad``.
    Built from their model config (a ``config.json`` dict); ``load_state_dict`` takes their keys.
    """

    algorithm = "metamotivo-fb"

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
        self._backward_map = _BackwardNet(
            self.obs_dim, self.z_dim, b["hidden_dim"], b["hidden_layers"], bool(b["norm"])
        )
        self._forward_map = _forward_map(self.obs_dim, self.action_dim, self.z_dim, archi["f"], self.z_dim)
        self._actor = _ActorNet(self.obs_dim, self.z_dim, self.action_dim, archi["actor"])
        self._obs_normalizer = _ObsNormalizer(self.obs_dim) if cfg["norm_obs"] else nn.Identity()
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
        rewards = rewards.reshape(-1).to(next_obs.dtype)
        if len(next_obs) == 0 or len(rewards) != len(next_obs):
            raise FastBFMError(
                f"reward inference needs as many rewards as states, got {len(rewards)} and {len(next_obs)}"
            )
        return rewards

    @staticmethod
    def _check_embedding(w: torch.Tensor) -> torch.Tensor:
        if not torch.isfinite(w).all() or w.norm() == 0:
            raise FastBFMError("reward inference failed: the rewards are all zero (or not finite) on the samples given")
        return w

    def reward_embedding(self, next_obs, rewards):
        """E[r(s') B(s')]: Meta Motivo's reward_inference before projection, as a mean (value units)."""
        rewards = self._check_samples(next_obs, rewards)
        return self._check_embedding(self._weighted_B_sum(next_obs, rewards) / len(rewards))

    def infer_from_rewards_weighted(self, next_obs, rewards, temperature: float = 10.0):
        """Meta Motivo's ``reward_wr_inference`` (used for the humanoid): rewards weighted by softmax(10 r)."""
        rewards = self._check_samples(next_obs, rewards)
        weights = torch.softmax(temperature * rewards, 0) * rewards
        return self.project(self._check_embedding(self._weighted_B_sum(next_obs, weights)))



# -- loading ----------------------------------------------------------------------------------------


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FastBFMError(f"cannot read {path}: not valid JSON ({_one_line(e)})") from None
    if not isinstance(data, dict):
        raise FastBFMError(f"cannot read {path}: expected a JSON object")
    return data


def _one_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _is_agent_config(data: dict) -> bool:
    # An agent's save wraps the model config: {"model": {...}, "train": {...}, "compile", "cudagraphs"}.
    return isinstance(data.get("model"), dict) and "archi" not in data


def _find_files(root: Path) -> tuple[Path, dict, dict]:
    """(weights file, model config, train config or {}) of a published or agent-saved folder."""
    if not root.is_dir():
        raise FastBFMError(f"no Meta Motivo checkpoint folder at {root}")
    weights_dir = next((d for d in (root / "model", root) if (d / WEIGHTS).is_file()), None)
    if weights_dir is None:
        raise FastBFMError(f"no {WEIGHTS} in {root} or {root / 'model'}: not a Meta Motivo checkpoint folder")
    root_config = _read_json(root / CONFIG) if (root / CONFIG).is_file() else None
    train = root_config.get("train", {}) if root_config is not None and _is_agent_config(root_config) else {}
    if (weights_dir / CONFIG).is_file():
        config = _read_json(weights_dir / CONFIG)
    elif root_config is not None:
        config = root_config
    else:
        raise FastBFMError(f"no {CONFIG} next to {weights_dir / WEIGHTS}: cannot tell the architecture")
    if _is_agent_config(config):
        train = config.get("train", {}) or train
        config = config["model"]
    return weights_dir / WEIGHTS, config, train if isinstance(train, dict) else {}


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(path, device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise FastBFMError(f"cannot read {path}: not a valid safetensors file ({_one_line(e)})") from None


def _check_state(path: Path, found: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    missing = sorted(k for k in expected if k not in found)
    extra = sorted(k for k in found if k not in expected)
    if extra:
        raise FastBFMError(f"{path} has {len(extra)} weight(s) that config.json does not explain, e.g. '{extra[0]}'")
    if missing:
        raise FastBFMError(f"{path} lacks {len(missing)} weight(s) that config.json implies, e.g. '{missing[0]}'")
    for key, value in expected.items():
        if found[key].shape != value.shape:
            raise FastBFMError(
                f"shape mismatch in {path}: '{key}' is {tuple(found[key].shape)} but config.json implies {tuple(value.shape)}"
            )
        if found[key].is_floating_point() and not torch.isfinite(found[key]).all():
            raise FastBFMError(f"{path}: weight '{key}' has non-finite values")


def load_metamotivo(folder: str | Path, discount: float | None = None) -> MetaMotivoFB:
    """A Meta Motivo FB or FB-CPR checkpoint folder as a :class:`MetaMotivoFB` (CPU, float32).

    ``discount`` is the one the model was trained with; adaptation methods (LoLA's bootstrap) read it from
    ``model.meta["train"]["discount"]``. Default: the agent config's ``train.discount`` when the folder
    has one; the published folders do not (Meta Motivo's humanoid models used 0.98).
    """
    root = Path(folder)
    path, config, train = _find_files(root)
    model = MetaMotivoFB(config)
    tensors = _read_weights(path)
    skipped = sorted({k.split(".", 1)[0] for k in tensors if k.startswith(SKIPPED_PREFIXES)})
    used = {k: v for k, v in tensors.items() if not k.startswith(SKIPPED_PREFIXES)}
    _check_state(path, used, model.state_dict())
    model.load_state_dict(used, strict=True)
    if any(k.startswith(("_critic.", "_discriminator.")) for k in tensors):
        model.meta["model_type"] = "fb-cpr"
    cfg = model.config
    model.meta.update(
        folder=str(root),
        weights=str(path),
        obs_dim=model.obs_dim,
        action_dim=model.action_dim,
        z_dim=model.z_dim,
        archi={
            "f": cfg["archi"]["f"].model,
            "actor": cfg["archi"]["actor"].model,
            "ensemble_mode": cfg["archi"]["f"].ensemble_mode,
        },
        norm_obs=bool(cfg["norm_obs"]),
        ignored=skipped,
    )
    discount = discount if discount is not None else train.get("discount")
    if discount is not None:
        if not (isinstance(discount, (int, float)) and 0 < discount < 1):
            raise FastBFMError(f"discount must be in (0, 1), got {discount!r}")
        model.meta["train"] = {"discount": float(discount)}
    return model


# -- random checkpoints ------------------------------------------------------------------------------


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
            extras["_critic"] = _forward_map(obs_dim, action_dim, z_dim, model.config["archi"]["f"], 1)
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
