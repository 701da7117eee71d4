"""Reward-free datasets: collection, the ExORL layout, relabelling."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from fastbfm.data.collect import CollectConfig, collect
from fastbfm.data.dataset import TransitionDataset, load_dataset
from fastbfm.data.relabel import relabel

DEFAULT_EPISODES = {"point_mass_maze": 1000}


def default_dataset_dir(domain: str) -> Path:
    return Path("data") / domain / "explore"


def ensure_dataset(domain: str, path: str | Path | None = None, progress: bool = True) -> TransitionDataset:
    """Load ``path``, or the default exploration dataset of ``domain``, collecting it first if absent.

    The default dataset is the one the shipped models were trained on: same collector, seed and size.
    """
    if path is not None:
        return load_dataset(path)
    folder = default_dataset_dir(domain)
    config = replace(CollectConfig(), domain=domain, episodes=DEFAULT_EPISODES.get(domain, 1000))
    if not folder.is_dir() or len(list(folder.glob("*.npz"))) < config.episodes:
        collect(config, folder, progress=progress)
    return load_dataset(folder)


__all__ = ["CollectConfig", "TransitionDataset", "collect", "ensure_dataset", "load_dataset", "relabel", "default_dataset_dir"]
