"""Shipped models: each folder holds ``model.safetensors``, ``config.json`` and ``MODEL_CARD.md``."""

from __future__ import annotations

from pathlib import Path

from fastbfm.errors import FastBFMError

ZOO_DIR = Path(__file__).parent


def shipped_models() -> list[str]:
    return sorted(p.name for p in ZOO_DIR.iterdir() if (p / "config.json").is_file())


def resolve_model(name_or_path: str | Path) -> Path:
    """A zoo name (e.g. ``maze-fb``) or a path to a checkpoint folder."""
    path = Path(name_or_path)
    if path.is_dir():
        return path
    if (ZOO_DIR / str(name_or_path) / "config.json").is_file():
        return ZOO_DIR / str(name_or_path)
    known = ", ".join(shipped_models()) or "none"
    raise FastBFMError(f"unknown model '{name_or_path}': not a checkpoint folder nor a shipped model ({known})")
