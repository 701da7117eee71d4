"""dm_control environments for registry tasks: the reference single-environment path."""

from __future__ import annotations

import collections

import numpy as np
from dm_control import mujoco as dm_mujoco
from dm_control.rl import control
from dm_control.suite import base, common

from fastbfm.envs.registry import Domain, Task, get_domain, get_task


def load_physics(domain: Domain) -> dm_mujoco.Physics:
    with open(domain.xml_path) as f:
        xml = f.read()
    return dm_mujoco.Physics.from_xml_string(xml, common.ASSETS)


class RegistryTask(base.Task):
    """A dm_control task whose reward and resets come from the fastbfm registry."""

    def __init__(self, task: Task, random=None):
        super().__init__(random=random)
        self.spec = task
        self.domain = get_domain(task.domain)

    def initialize_episode(self, physics):
        physics.set_state(self.domain.sample_initial_state(self.random, 1)[0])
        super().initialize_episode(physics)

    def get_observation(self, physics):
        obs = self.domain.observe(physics.data.qpos.copy(), physics.data.qvel.copy())
        return collections.OrderedDict(observations=obs.astype(np.float32))

    def get_reward(self, physics):
        return float(self.spec.reward(physics.data))


def make_env(task_name: str, seed: int | None = None) -> control.Environment:
    """A dm_control ``Environment`` for ``"domain:task"``; ``seed`` fixes every reset."""
    task = get_task(task_name)
    domain = get_domain(task.domain)
    physics = load_physics(domain)
    if task.decorate is not None:
        task.decorate(physics)
    time_limit = domain.episode_length * domain.n_sub_steps * physics.model.opt.timestep
    return control.Environment(
        physics,
        RegistryTask(task, random=seed),
        time_limit=time_limit,
        n_sub_steps=domain.n_sub_steps,
    )


__all__ = ["make_env", "load_physics", "RegistryTask"]
