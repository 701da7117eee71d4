"""Checkpoints: safetensors weights plus a JSON config with a format version and checksums; no pickle.

Each file is written atomically (temporary file, then rename) and the JSON, written last, holds the
SHA-256 of every weight file, so a crash mid-save never passes for a good checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from fastbfm.errors import FastBFMError
from fastbfm.io import atomic_write, load_tensors, optimizer_tensors, restore_optimizer, save_tensors, sha256_file, write_json  # noqa: F401 (re-exported)
from fastbfm.io import read_json as read_any_json
from fastbfm.schemas import ModelConfigFile, validate

FORMAT_VERSION = 1
MODEL_WEIGHTS, MODEL_CONFIG = "model.safetensors", "config.json"
__all__ = ["atomic_write", "load_tensors", "save_tensors", "write_json", "read_json", "save_model", "load_model"]
WEIGHT_DTYPES = {torch.float32: "float32", torch.float16: "float16", torch.int8: "int8"}
"""Storage of a model's weights, by the name ``config.json`` records: ``float16`` halves every floating
tensor; ``int8`` stores matrices with one float32 scale per row (the last axis), a quarter of float32's
size, and keeps vectors (biases, norms, input normalisation) float32. Loading restores float32."""
INT8_SCALE = ".int8_scale"


def _checkpoint_config(data, path: Path) -> dict:
    if not isinstance(data, dict) or data.get("format_version") != FORMAT_VERSION:
        raise FastBFMError(f"unsupported checkpoint config {path}: expected format_version {FORMAT_VERSION}")
    return data


def read_json(path: Path, schema: type | None = None) -> dict:
    """A checkpoint's JSON (``config.json``, the trainer state), with its format version checked, and
    validated against ``schema`` (a model of :mod:`fastbfm.schemas`) when given."""

    def check(data, path: Path) -> dict:
        data = _checkpoint_config(data, path)
        return data if schema is None else validate(path, data, schema, "corrupt checkpoint config")

    return read_any_json(path, check, what="checkpoint config")


def compress_weights(tensors: dict[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """``tensors`` with every floating matrix stored as ``dtype`` (one of :data:`WEIGHT_DTYPES`)."""
    if dtype not in WEIGHT_DTYPES:
        raise FastBFMError(f"unknown weight storage {dtype}: choose one of {', '.join(map(str, WEIGHT_DTYPES))}")
    out = {}
    for name, t in tensors.items():
        if dtype == torch.float32 or not t.is_floating_point():
            out[name] = t
        elif dtype == torch.float16:
            out[name] = t.half()
        elif t.dim() < 2:
            out[name] = t
        else:
            scale = t.float().abs().amax(-1, keepdim=True).clamp_min(1e-12) / 127
            out[name] = torch.round(t.float() / scale).to(torch.int8)
            out[name + INT8_SCALE] = scale
    return out


def decompress_weights(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """float32 tensors from :func:`compress_weights`' output."""
    out = {}
    for name, t in tensors.items():
        if name.endswith(INT8_SCALE):
            continue
        if name + INT8_SCALE in tensors:
            out[name] = t.float() * tensors[name + INT8_SCALE]
        else:
            out[name] = t.float() if t.dtype == torch.float16 else t
    return out


def save_model(model: nn.Module, folder: str | Path, meta: dict[str, Any] | None = None, dtype: torch.dtype | None = None) -> Path:
    """Write ``model`` to ``folder``; ``dtype`` (``torch.float16`` or ``torch.int8``) stores its matrices
    compactly, and loading casts them back to the model's float32."""
    dtype = torch.float32 if dtype is None else dtype
    weights = compress_weights(model.state_dict(), dtype)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    digest = save_tensors(folder / MODEL_WEIGHTS, weights)
    config = {
        "format_version": FORMAT_VERSION,
        "algorithm": model.algorithm,
        "model": model.config_dict(),
        "sha256": {MODEL_WEIGHTS: digest},
        "meta": meta or {},
    }
    if dtype != torch.float32:
        config["weights"] = WEIGHT_DTYPES[dtype]
    write_json(folder / MODEL_CONFIG, config)
    return folder


def load_model(folder: str | Path) -> nn.Module:
    """Rebuild a BFM from a fastbfm checkpoint folder's ``config.json`` and ``model.safetensors``, checking
    checksum and shapes. (Any model by name or format, Meta Motivo's included: :func:`fastbfm.models.load_model`.)"""
    folder = Path(folder)
    config = _read_model_config(folder)
    return _model_from(folder, config, load_tensors(folder / MODEL_WEIGHTS, weights_digest(folder, config)))


def weights_digest(folder: Path, config: dict) -> str:
    """The SHA-256 of the weights that a checkpoint's config records; a config without one is refused."""
    digest = config.get("sha256", {}).get(MODEL_WEIGHTS)
    if digest is None:
        raise FastBFMError(
            f"{folder / MODEL_CONFIG} records no checksum of {MODEL_WEIGHTS}, so its weights cannot be checked; "
            f"if you vouch for them, `fastbfm sign {folder}` records it"
        )
    return digest


def _model_from(folder: Path, config: dict, weights: dict[str, torch.Tensor]) -> nn.Module:
    from fastbfm.bfm.algorithms import build_model

    algorithm = config["algorithm"]
    try:
        model = build_model(algorithm, config["model"])
    except (TypeError, KeyError, FastBFMError) as e:
        raise FastBFMError(f"corrupt checkpoint config {folder / MODEL_CONFIG}: {e}") from e
    if config.get("weights", "float32") not in WEIGHT_DTYPES.values():
        raise FastBFMError(f"corrupt checkpoint config {folder / MODEL_CONFIG}: unknown weight storage {config['weights']!r}")
    weights = decompress_weights(weights)
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()
        raise FastBFMError(f"corrupt checkpoint {folder}: weights do not match the config ({first[0]})") from e
    model.meta = config.get("meta", {})
    discount = model.meta.get("train", {}).get("discount") if isinstance(model.meta.get("train"), dict) else None
    model.discount = None if discount is None else float(discount)
    return model


def _read_model_config(folder: Path) -> dict:
    from fastbfm.bfm.algorithms import ALGORITHMS

    if not folder.is_dir():
        raise FastBFMError(f"checkpoint not found: {folder}")
    config = read_json(folder / MODEL_CONFIG, ModelConfigFile)
    if config["algorithm"] not in ALGORITHMS:
        raise FastBFMError(f"corrupt checkpoint config {folder / MODEL_CONFIG}: unknown algorithm {config['algorithm']!r}")
    return config


def sign_model(folder: str | Path) -> str:
    """Record the SHA-256 of a checkpoint's weights in its ``config.json``, for weights the user vouches
    for (edited by hand, or written by a tool that records no checksum). The weights must still fit the
    config; returns the digest."""
    folder = Path(folder)
    config = _read_model_config(folder)
    weights = load_tensors(folder / MODEL_WEIGHTS)
    _model_from(folder, config, weights)
    digest = sha256_file(folder / MODEL_WEIGHTS)
    write_json(folder / MODEL_CONFIG, {**config, "sha256": {**config.get("sha256", {}), MODEL_WEIGHTS: digest}})
    return digest


