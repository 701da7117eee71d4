"""Reading a Meta Motivo checkpoint folder (published or agent-saved layout) into a :class:`MetaMotivoFB`."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from fastbfm.errors import FastBFMError
from fastbfm.io import read_json
from fastbfm.interop.metamotivo.config import CONFIG, SKIPPED_PREFIXES, WEIGHTS
from fastbfm.interop.metamotivo.model import MetaMotivoFB

def _object(data, path: Path) -> dict:
    if not isinstance(data, dict):
        raise FastBFMError(f"cannot read {path}: expected a JSON object")
    return data


def _read_json(path: Path) -> dict:
    return read_json(path, _object, what="Meta Motivo config")


def looks_like_metamotivo(folder: Path) -> bool:
    """A Meta Motivo folder: weights under model/, or a config.json with their 'archi' and no format_version."""
    folder = Path(folder)
    if (folder / "model" / WEIGHTS).is_file():
        return True
    try:
        data = json.loads((folder / CONFIG).read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return False
    return isinstance(data, dict) and "format_version" not in data and "archi" in data


def _one_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _is_agent_config(data: dict) -> bool:
    # An agent's save wraps the model config: {"model": {...}, "train": {...}, "compile", "cudagraphs"}.
    return isinstance(data.get("model"), dict) and "archi" not in data


def find_checkpoint(root: Path) -> tuple[Path, dict, dict]:
    """(weights file, model config, train config or {}) of a published or agent-saved folder."""
    if not root.is_dir():
        raise FastBFMError(f"no Meta Motivo checkpoint folder at {root}")
    weights_dir = next((d for d in (root / "model", root) if (d / WEIGHTS).is_file()), None)
    if weights_dir is None:
        raise FastBFMError(f"no {WEIGHTS} in {root} or {root / 'model'}: not a Meta Motivo checkpoint folder")
    root_config = _read_json(root / CONFIG) if (root / CONFIG).is_file() else None
    if root_config is not None and weights_dir != root and not _is_agent_config(root_config):
        raise FastBFMError(f"corrupt Meta Motivo folder {root}: its weights are in model/, so {CONFIG} must be an agent's config "
                           "({\"model\": ..., \"train\": ...})")  # fmt: skip
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
    if train is None:
        train = {}
    if not isinstance(train, dict):
        raise FastBFMError(f"corrupt Meta Motivo config in {root}: 'train' must be an object, got {train!r}")
    return weights_dir / WEIGHTS, config, train


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

    ``discount`` is the one the model was trained with (``model.discount``: adaptation methods that
    bootstrap with the critic refuse a model without it). An agent's save records it (``train.discount``);
    the published folders do not, so give it for them (Meta Motivo's humanoid models used 0.98).
    """
    root = Path(folder)
    path, config, train = find_checkpoint(root)
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
    recorded = train.get("discount")
    if recorded is not None and not _is_discount(recorded):
        raise FastBFMError(f"corrupt Meta Motivo config {root / CONFIG}: train.discount must be a number in (0, 1), got {recorded!r}")
    if discount is not None and not _is_discount(discount):
        raise FastBFMError(f"discount must be in (0, 1), got {discount!r}")
    if discount is not None and recorded is not None and abs(discount - recorded) > 1e-12:
        raise FastBFMError(f"{root} was trained with discount {recorded}, not {discount}: give a discount only for checkpoints that record none")
    discount = discount if discount is not None else recorded
    if discount is not None:
        model.discount = float(discount)
        model.meta["train"] = {"discount": model.discount}
    return model


def _is_discount(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and 0 < value < 1
