"""Reward-free datasets: collection, the ExORL layout, relabelling."""

from __future__ import annotations

import sys
from pathlib import Path

from fastbfm.data.collect import CollectConfig, collect
from fastbfm.data.dataset import TransitionDataset, load_dataset
from fastbfm.data.manifest import read_manifest
from fastbfm.data.relabel import relabel
from fastbfm.envs.registry import get_domain
from fastbfm.errors import FastBFMError

RND_TRANSITIONS = 1_000_000


def default_collect_config(domain: str, **overrides) -> CollectConfig:
    """The default exploration recipe of ``domain`` (its ``collect_recipe``), with ``overrides`` (fields of
    :class:`CollectConfig`). With ``explorer="rnd"``: full episodes, 1M transitions, the RND explorer's
    defaults (the archive explorer's fields do not apply)."""
    if overrides.get("explorer") == "rnd":
        episodes = RND_TRANSITIONS // (overrides.get("segment_length") or get_domain(domain).episode_length)
        return CollectConfig(domain=domain, **{"episodes": max(episodes, 1), **overrides})
    return CollectConfig(domain=domain, **{**get_domain(domain).collect_recipe, **overrides})


def default_dataset_dir(domain: str) -> Path:
    return Path("data") / domain / "explore"


def _default_is_complete(domain: str) -> bool:
    folder, config = default_dataset_dir(domain), default_collect_config(domain)
    if not folder.is_dir():
        return False
    manifest = read_manifest(folder)
    # an interrupted collection (manifest not complete) is finished rather than refused
    return len(list(folder.glob("*.npz"))) >= config.episodes and (manifest is None or bool(manifest.get("complete")))


def load_default_dataset(domain: str) -> TransitionDataset:
    """The default exploration dataset of ``domain``, which must be there: this never collects."""
    folder = default_dataset_dir(domain)
    if not _default_is_complete(domain):
        raise FastBFMError(
            f"no complete dataset at {folder}: collect it with `fastbfm collect --domain {domain} --out {folder}` "
            "(or run `fastbfm eval`/`adapt` without --data, which collect it)"
        )
    return load_dataset(folder)


def ensure_dataset(domain: str, path: str | Path | None = None, progress: bool = True, resimulate: bool = False) -> TransitionDataset:
    """Load ``path``, or the default exploration dataset of ``domain``, collecting it first if absent.

    The default dataset is the one the shipped models were trained on: same collector, seed and size.
    Collecting it is said on stderr before it starts (how many transitions, where). ``resimulate``
    re-simulates a dataset recorded by another MuJoCo (see :func:`load_dataset`).
    """
    if path is not None:
        return load_dataset(path, resimulate=resimulate, domain=domain if resimulate else None)
    return load_dataset(collect_default_dataset(domain, progress))


def collect_default_dataset(domain: str, progress: bool = True) -> Path:
    """The folder of the default exploration dataset of ``domain``, collected first (said on stderr) if absent."""
    folder = default_dataset_dir(domain)
    if not _default_is_complete(domain):
        config = default_collect_config(domain)
        transitions = config.episodes * (config.segment_length or get_domain(domain).episode_length)
        print(
            f"collecting {folder}: {transitions:,} transitions of {domain} with its default recipe, which the shipped "
            "models were trained on (once; an interrupted collection resumes; --data uses another dataset)",
            file=sys.stderr, flush=True,
        )
        collect(config, folder, progress=progress)
    return folder


__all__ = [
    "CollectConfig",
    "TransitionDataset",
    "collect",
    "default_collect_config",
    "collect_default_dataset",
    "default_dataset_dir",
    "ensure_dataset",
    "load_default_dataset",
    "load_dataset",
    "relabel",
]
