"""File I/O every layer shares: atomic writes, JSON, CSV, safetensors, checksums.

Every write goes to a temporary file in the target's folder, then is renamed over the target, so a
crash never leaves a torn file behind. Every JSON or CSV file fastbfm reads goes through
:func:`read_json` or :func:`read_csv`, which take an optional ``schema``: a callable
``(data, path) -> data`` that checks (and may normalise) what was read and raises a one-line
:class:`~fastbfm.errors.FastBFMError` naming the file and the field.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from fastbfm.errors import FastBFMError

Schema = Callable[[Any, Path], Any]
"""Checks the data read from a file: ``schema(data, path)`` returns the data or raises FastBFMError."""


def write_failed(path: str | Path, error: BaseException) -> FastBFMError:
    """A failed write (a full disk, a read-only folder, a path under a file) as one line naming ``path``."""
    reason = error.strerror if isinstance(error, OSError) and error.strerror else (str(error).strip().splitlines() or [type(error).__name__])[0]
    return FastBFMError(f"cannot write {path}: {reason}")


def atomic_write(path: str | Path, write: Callable[[str], None]) -> None:
    """``write(tmp)`` fills a temporary file beside ``path``, which then replaces ``path`` in one rename.
    A failure leaves ``path`` as it was and raises one line naming it."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    except OSError as e:
        raise write_failed(path, e) from e
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, (OSError, SafetensorError)):
            raise write_failed(path, e) from e
        raise


def write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def write_json(path: str | Path, data: Any) -> None:
    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(data, f, indent=2)

    atomic_write(path, write)


def read_json(path: str | Path, schema: Schema | None = None, what: str = "file") -> Any:
    """The JSON in ``path``, checked by ``schema`` when given. ``what`` names the file in errors
    ("missing checkpoint file: ...", "corrupt dataset manifest ...: ...")."""
    path = Path(path)
    if not path.is_file():
        raise FastBFMError(f"missing {what}: {path}")
    try:
        with open(path) as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise FastBFMError(f"corrupt {what} {path}: not valid JSON ({e})") from e
    return data if schema is None else schema(data, path)


def read_csv(path: str | Path, schema: Schema | None = None, what: str = "file") -> list[dict[str, str]]:
    """The rows of a CSV file with a header, as dicts of strings, checked by ``schema`` when given."""
    path = Path(path)
    if not path.is_file():
        raise FastBFMError(f"missing {what}: {path}")
    try:
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
    except (csv.Error, UnicodeDecodeError) as e:
        raise FastBFMError(f"corrupt {what} {path}: not a CSV table ({e})") from e
    return rows if schema is None else schema(rows, path)


def write_csv(path: str | Path, columns: tuple[str, ...], rows: list[dict]) -> None:
    """A tidy table: a header of ``columns``, then one line per row."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buffer.getvalue())


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor]) -> str:
    """Tensors to a safetensors file (on the CPU, contiguous); returns the file's SHA-256."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    atomic_write(path, lambda tmp: save_file(tensors, tmp))
    return sha256_file(path)


def load_tensors(path: str | Path, sha256: str | None = None, what: str = "checkpoint") -> dict[str, torch.Tensor]:
    """A safetensors file, checked against ``sha256`` when given."""
    path = Path(path)
    if not path.is_file():
        raise FastBFMError(f"missing {what} file: {path}")
    if sha256 is not None and sha256_file(path) != sha256:
        raise FastBFMError(f"corrupt {what}: {path} does not match the checksum in its config")
    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError) as e:
        raise FastBFMError(f"corrupt {what} {path}: {e}") from e


def optimizer_tensors(name: str, optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Flatten an optimizer's state into named tensors plus JSON-able param groups."""
    state = optimizer.state_dict()
    tensors = {
        f"optim.{name}.{idx}.{key}": value if torch.is_tensor(value) else torch.tensor(value)
        for idx, entries in state["state"].items()
        for key, value in entries.items()
    }
    return tensors, {"param_groups": state["param_groups"]}


# How the optimiser runs on this device (fused, capturable for CUDA graphs), not what it has learnt:
# kept from the live optimiser when a checkpoint from another device or version is loaded.
IMPLEMENTATION_KEYS = ("fused", "capturable", "foreach", "differentiable")


def restore_optimizer(name: str, optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], groups: dict) -> None:
    prefix = f"optim.{name}."
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith(prefix):
            idx, field = key[len(prefix) :].split(".", 1)
            state.setdefault(int(idx), {})[field] = value
    saved = groups["param_groups"]
    live = optimizer.param_groups
    if len(saved) == len(live):
        saved = [{**g, **{k: current[k] for k in IMPLEMENTATION_KEYS if k in current}} for g, current in zip(saved, live)]
    try:
        optimizer.load_state_dict({"state": state, "param_groups": saved})
    except (ValueError, KeyError, TypeError) as e:
        # param groups that do not fit this optimizer (sizes, keys): the trainer state is not this run's
        raise FastBFMError(f"corrupt trainer state: optimizer '{name}' does not fit its saved state ({str(e).strip().splitlines()[0]})") from e
