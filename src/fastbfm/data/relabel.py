"""Rewards of any task on stored physics: vectorised in batches of simulations for built-in tasks, one
sample at a time through the task's dm_control reference for rewards given as ``reward(physics)``."""

from __future__ import annotations

import numpy as np

from fastbfm.data.dataset import TransitionDataset
from fastbfm.envs.batch import BatchedEnv
from fastbfm.envs.registry import Task, get_domain

RELABEL_CHUNK = 512  # simulations per batch: building one costs ~0.7 ms per simulation


def relabel(task: Task, next_physics: np.ndarray, action: np.ndarray) -> np.ndarray:
    """r(s', a) for each row: the reward dm_control gives after the step that reached ``next_physics``."""
    if not task.vectorized:
        return relabel_per_sample(task, next_physics, action)
    env = BatchedEnv(task, num_envs=min(RELABEL_CHUNK, max(len(next_physics), 1)), kinematics_only=True)
    return env.relabel(task, next_physics, action)


def relabel_per_sample(task: Task, next_physics: np.ndarray, action: np.ndarray) -> np.ndarray:
    """The per-sample dm_control loop (set state and control, ``forward``, ``get_reward``): the fallback
    for user rewards and the baseline that ``fastbfm bench relabel`` measures."""
    from fastbfm.envs.dmc import reference_task

    domain = get_domain(task.domain)
    physics = domain.make_physics()
    if task.decorate is not None:
        task.decorate(physics)
    dm_task = reference_task(task)
    out = np.empty(len(next_physics))
    for i, (state, a) in enumerate(zip(next_physics, action)):
        physics.set_state(state)
        physics.set_control(a)
        physics.forward()
        out[i] = dm_task.get_reward(physics)
    return out


def sample_rewards(
    dataset: TransitionDataset, task: Task, num_samples: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``num_samples`` random transitions of the dataset: (next_obs, reward of ``task``)."""
    idx = rng.choice(len(dataset), size=min(num_samples, len(dataset)), replace=False)
    idx.sort()
    return dataset.next_obs[idx], relabel(task, dataset.next_physics[idx], dataset.action[idx])
