"""dm_control environments for registry tasks: the reference single-environment path."""

from __future__ import annotations

import collections

import numpy as np
from dm_control.rl import control
from dm_control.suite import base

from fastbfm.envs.registry import Domain, Task, get_domain, get_task
from fastbfm.envs.user_reward import UserVectorReward, finite_real


class StateSamplerTask(base.Task):
    """A dm_control task whose resets and observations come from a :class:`Domain` (used by the maze).

    ``get_reward`` is set per task by :func:`reference_task`.
    """

    def __init__(self, domain: Domain, random=None):
        super().__init__(random=random)
        self.domain = domain

    def initialize_episode(self, physics):
        physics.set_state(self.domain.sample_initial_state(self.random, 1)[0])
        super().initialize_episode(physics)

    def get_observation(self, physics):
        return collections.OrderedDict(observations=self.domain.observe(physics.data).astype(np.float32))

    def get_reward(self, physics):
        raise NotImplementedError("StateSamplerTask needs a reward from reference_task()")


def reference_task(task: Task, random=None) -> base.Task:
    """The dm_control ``Task`` of a registry task: its own reference class if it has one (dm_control's
    task for standard tasks), else the domain's base task with the task's reward."""
    if task.reference is not None:
        return task.reference(random)
    dm_task = get_domain(task.domain).base_task(random)
    if task.physics_reward is not None:
        fn = task.physics_reward
        dm_task.get_reward = lambda physics: float(fn(physics))
    elif isinstance(task.reward, UserVectorReward):  # a user's: the contract, at the episode's clock
        reward = task.reward
        dm_task.get_reward = lambda physics: finite_real(reward(physics.data), reward.name, f"at t = {float(physics.data.time):.3f} s")
    else:
        reward = task.reward
        dm_task.get_reward = lambda physics: float(reward(physics.data))
    return dm_task


def make_env(task_name: str | Task, seed: int | None = None) -> control.Environment:
    """A dm_control ``Environment`` for ``"domain:task"`` with one flat observation vector under
    ``"observations"``; ``seed`` fixes every reset."""
    task = get_task(task_name)
    domain = get_domain(task.domain)
    physics = domain.make_physics()
    if task.decorate is not None:
        task.decorate(physics)
    control_timestep = domain.n_sub_steps * physics.model.opt.timestep
    return control.Environment(
        physics,
        reference_task(task, random=seed),
        time_limit=domain.episode_length * control_timestep,
        n_sub_steps=domain.n_sub_steps,
        flat_observation=True,
    )


__all__ = ["make_env", "reference_task", "StateSamplerTask"]
