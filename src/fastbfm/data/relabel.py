"""Rewards of any task on stored physics: vectorised in batches of simulations for built-in tasks, one
sample at a time through the task's dm_control reference for rewards given as ``reward(physics)``."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from fastbfm.data.dataset import TransitionDataset
from fastbfm.envs.batch import BatchedEnv
from fastbfm.envs.registry import Task, get_domain
from fastbfm.envs.user_reward import UserReward

# Each simulation reserves MuJoCo's arena (~16 MB of address space for these models): 128 per batch
# relabel as fast as 512 here and keep a process's address space small enough to fork (ENOMEM seen at 24 GB).
RELABEL_CHUNK = 128


def relabel(task: Task, next_physics: np.ndarray, action: np.ndarray) -> np.ndarray:
    """r(s', a) for each row: the reward dm_control gives after the step that reached ``next_physics``."""
    if not task.vectorized:
        return relabel_per_sample(task, next_physics, action)
    return _relabel_env(task).relabel(task, next_physics, action)


# Building a batch costs about as much as relabelling 50k walker states: keep one for the last few tasks.
@lru_cache(maxsize=4)
def _relabel_env(task: Task) -> BatchedEnv:
    return BatchedEnv(task, num_envs=RELABEL_CHUNK, kinematics_only=True)


@lru_cache(maxsize=16)
def _reference(task: Task):
    from fastbfm.envs.dmc import reference_task

    physics = get_domain(task.domain).make_physics()
    if task.decorate is not None:
        task.decorate(physics)
    return physics, reference_task(task)


def relabel_per_sample(task: Task, next_physics: np.ndarray, action: np.ndarray) -> np.ndarray:
    """The per-sample dm_control loop (set state and control, ``forward``, ``get_reward``): the fallback
    for user rewards and the baseline that ``fastbfm bench relabel`` measures."""
    physics, dm_task = _reference(task)
    user = isinstance(task.physics_reward, UserReward)
    out = np.empty(len(next_physics))
    for i, (state, a) in enumerate(zip(next_physics, action)):
        physics.set_state(state)
        physics.set_control(a)
        physics.forward()
        out[i] = task.physics_reward(physics, f"on relabelled sample {i}") if user else dm_task.get_reward(physics)
    return out


def sample_rewards(
    dataset: TransitionDataset, task: Task, num_samples: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``num_samples`` random transitions of the dataset: (next_obs, reward of ``task``)."""
    idx = rng.choice(len(dataset), size=min(num_samples, len(dataset)), replace=False)
    idx.sort()
    return dataset.next_obs[idx], relabel(task, dataset.next_physics[idx], dataset.action[idx])
