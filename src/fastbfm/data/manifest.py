"""Dataset manifests: ``manifest.json`` beside the episodes, written atomically and last.

It holds a format version, the collection config, the dimension and dtype of every stored array, and
per episode file its row count and SHA-256. While a collection runs the manifest says
``"complete": false``, so an interrupted collection never passes for a finished dataset. Loading always
checks the cheap part (version, completeness, files present, shapes, dtypes); the checksums are checked
on request (``load_dataset(verify=True)`` or ``FASTBFM_VERIFY_DATA=1``). Folders without a manifest
(real ExORL data, datasets from before manifests) load with the shape checks only.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from fastbfm.errors import FastBFMError
from fastbfm.io import read_json, write_json
from fastbfm.schemas import MAX_DIM, MAX_ROWS, ManifestFile, validate

MANIFEST = "manifest.json"
FORMAT_VERSION = 1
ARRAYS = ("observation", "action", "physics")
VERIFY_ENV = "FASTBFM_VERIFY_DATA"


def verify_requested(verify: bool | None) -> bool:
    if verify is not None:
        return verify
    return os.environ.get(VERIFY_ENV, "").strip().lower() not in ("", "0", "false", "no")


def array_specs(episode: dict[str, np.ndarray]) -> dict[str, dict]:
    return {k: {"dim": int(v.shape[1]), "dtype": str(v.dtype)} for k, v in episode.items() if k in ARRAYS}


def _numeric(array: np.ndarray) -> bool:
    return np.issubdtype(array.dtype, np.floating) or (np.issubdtype(array.dtype, np.integer) and array.dtype != np.bool_)


def check_episode(path: Path, episode: dict[str, np.ndarray], specs: dict[str, dict] | None, rows: int | None = None) -> dict[str, dict]:
    """Rows, dimensions, dtypes and values of one episode: consistent, finite numbers, and equal to
    ``specs`` if given. A NaN in a stored physics state is refused here: MuJoCo would replace it by a
    reset state when the state is relabelled, with only a warning."""
    for key in ARRAYS:
        array = episode[key]
        if array.ndim != 2 or not _numeric(array) or not 1 <= array.shape[1] <= MAX_DIM:
            raise FastBFMError(f"corrupt episode {path}: '{key}' is a {array.dtype} array of shape {array.shape}, expected 2-D numbers")
    lengths = {len(episode[k]) for k in ARRAYS}
    if len(lengths) != 1 or min(lengths) < 2 or max(lengths) > MAX_ROWS or (rows is not None and lengths != {rows}):
        raise FastBFMError(f"corrupt episode {path}: arrays of lengths {[len(episode[k]) for k in ARRAYS]}" + (f", manifest says {rows}" if rows else ""))
    discount = episode.get("discount")
    if discount is not None and (not _numeric(discount) or discount.size != len(episode["observation"])):
        raise FastBFMError(f"corrupt episode {path}: 'discount' is a {discount.dtype} array of shape {discount.shape}, expected one number per row")
    for key in (*ARRAYS, "discount"):
        if key in episode and np.issubdtype(episode[key].dtype, np.floating):
            bad = np.flatnonzero(~np.isfinite(episode[key]).all(axis=tuple(range(1, episode[key].ndim))))
            if len(bad):
                raise FastBFMError(f"corrupt episode {path}: non-finite values in '{key}' (row {bad[0]} of {len(episode[key])})")
    found = array_specs(episode)
    if specs is not None:
        for key in ARRAYS:
            if found[key]["dim"] != specs[key]["dim"] or (specs[key].get("dtype") and found[key]["dtype"] != specs[key]["dtype"]):
                raise FastBFMError(
                    f"corrupt episode {path}: '{key}' is {found[key]['dtype']} with {found[key]['dim']} columns, "
                    f"the rest of the dataset {specs[key]['dtype']} with {specs[key]['dim']}"
                )
    return found


def read_manifest(folder: Path) -> dict | None:
    path = folder / MANIFEST
    if not path.is_file():
        return None
    return read_json(path, _manifest_schema, what="dataset manifest")


def _manifest_schema(data, path: Path) -> dict:
    if not isinstance(data, dict) or data.get("format_version") != FORMAT_VERSION:
        raise FastBFMError(f"unsupported dataset manifest {path}: expected format_version {FORMAT_VERSION}")
    validate(path, data, ManifestFile, "corrupt dataset manifest")
    if data.get("digest") is not None and data["digest"] != files_digest(data.get("files") or {}):
        raise FastBFMError(f"corrupt dataset manifest {path}: its digest does not match its files' checksums")
    return data


def check_manifest(folder: Path, files: list[Path], manifest: dict) -> None:
    """The cheap checks: a finished collection whose files are all present, and no others."""
    if not manifest.get("complete"):
        raise FastBFMError(
            f"incomplete dataset {folder}: its collection was interrupted or is still running; "
            "rerun the same `fastbfm collect` command to finish it"
        )
    listed, present = set(manifest["files"]), {p.name for p in episode_names(folder)}
    if listed - present:
        raise FastBFMError(f"corrupt dataset {folder}: {len(listed - present)} episode file(s) of its manifest are missing, e.g. {min(listed - present)}")
    if present - listed:
        raise FastBFMError(f"corrupt dataset {folder}: {len(present - listed)} episode file(s) are not in its manifest, e.g. {min(present - listed)}")


def files_digest(files: dict[str, dict]) -> str:
    """What a dataset holds, in one SHA-256: over its episode files' names and checksums, in name order."""
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(f"{name}\t{files[name]['sha256']}\n".encode())
    return h.hexdigest()


def episode_names(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.npz"))


def write_manifest(folder: Path, config: dict, files: dict[str, dict] | None = None, specs: dict | None = None) -> None:
    """Atomically (re)write the manifest: ``files`` None marks a collection in progress."""
    data = {"format_version": FORMAT_VERSION, "kind": "fastbfm episodes", "complete": files is not None, "config": config}
    if files is not None:
        data.update(
            episodes=len(files),
            transitions=sum(f["rows"] - 1 for f in files.values()),
            arrays=specs,
            files=dict(sorted(files.items())),
            digest=files_digest(files),
        )
    write_json(folder / MANIFEST, data)
