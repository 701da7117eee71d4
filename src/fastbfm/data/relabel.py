"""Rewards of any task on stored physics, computed in batches of simulations (no per-sample loop)."""

from __future__ import annotations

import numpy as np

from fastbfm.data.dataset import TransitionDataset
from fastbfm.envs.batch import BatchedEnv
from fastbfm.envs.registry import Task

RELABEL_CHUNK = 4096


def relabel(task: Task, next_physics: np.ndarray, action: np.ndarray) -> np.ndarray:
    """r(s', a) for each row: the reward dm_control gives after the step that reached ``next_physics``."""
    env = BatchedEnv(task, num_envs=min(RELABEL_CHUNK, max(len(next_physics), 1)))
    return env.relabel(task, next_physics, action)


def sample_rewards(
    dataset: TransitionDataset, task: Task, num_samples: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``num_samples`` random transitions of the dataset: (next_obs, reward of ``task``)."""
    idx = rng.choice(len(dataset), size=min(num_samples, len(dataset)), replace=False)
    idx.sort()
    return dataset.next_obs[idx], relabel(task, dataset.next_physics[idx], dataset.action[idx])
