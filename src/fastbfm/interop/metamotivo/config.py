"""Meta Motivo's model config (their ``config.json``): their defaults filled in, every field validated."""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass(frozen=True)
class Net:
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


def _bool(value, name: str) -> bool:
    if not isinstance(value, bool):
        raise FastBFMError(f"Meta Motivo config: {name} must be true or false, got {value!r}")
    return value


def _section(archi: dict, key: str, defaults: dict) -> dict:
    section = archi.get(key, {})
    if not isinstance(section, dict):
        raise FastBFMError(f"Meta Motivo config: archi.{key} must be an object, got {section!r}")
    return {**defaults, **{k: v for k, v in section.items() if k in defaults}}


def _net(archi: dict, key: str, defaults: dict) -> Net:
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
    return Net(
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
        "norm_z": _bool(archi.get("norm_z", True), "archi.norm_z"),
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
