"""The ExORL/URLB four-room point-mass maze: 4-D observation, 2-D action, 1000-step episodes.

Rewards follow the reference definition (ExORL, controllable_agent, HILP): the target tolerance with
bounds (0, 0.015) and margin 0.015, times a small control-cost factor. Unlike the reference, which
draws the start position from numpy's global RNG, every reset here comes from a seeded generator.
"""

from __future__ import annotations

import os

import numpy as np
from dm_control import mujoco as dm_mujoco
from dm_control.suite import common
from dm_control.utils import rewards

from fastbfm.envs.registry import Domain, Fields, StatePartition, Task, register_domain

XML_PATH = os.path.join(os.path.dirname(__file__), "maze.xml")
TARGET_RADIUS = 0.015
POINTMASS_GEOM = 8  # index of geom "pointmass" in maze.xml: world geoms come first (checked by a test)
TARGETS = {
    "reach_top_left": (-0.15, 0.15),
    "reach_top_right": (0.15, 0.15),
    "reach_bottom_left": (-0.15, -0.15),
    "reach_bottom_right": (0.15, -0.15),
}


def make_physics() -> dm_mujoco.Physics:
    with open(XML_PATH) as f:
        return dm_mujoco.Physics.from_xml_string(f.read(), common.ASSETS)


def observe(fields: Fields) -> np.ndarray:
    return np.concatenate([fields.qpos, fields.qvel], axis=-1)


def base_task(random=None):
    from fastbfm.envs.dmc import StateSamplerTask

    return StateSamplerTask(DOMAIN, random=random)


def sample_initial_state(rng, n: int) -> np.ndarray:
    """Start in the top-left room at rest, as in the reference task."""
    state = np.zeros((n, 4))
    state[:, 0] = rng.uniform(-0.29, -0.15, size=n)
    state[:, 1] = rng.uniform(0.15, 0.29, size=n)
    return state


def reach_reward(target_xy: tuple[float, float]):
    target = np.array([*target_xy, 0.01])

    def reward(fields: Fields) -> np.ndarray:
        position = np.asarray(fields.geom_xpos)[..., POINTMASS_GEOM, :]
        distance = np.linalg.norm(position - target, axis=-1)
        near_target = rewards.tolerance(distance, bounds=(0, TARGET_RADIUS), margin=TARGET_RADIUS)
        control = rewards.tolerance(np.asarray(fields.ctrl), margin=1, value_at_margin=0, sigmoid="quadratic")
        small_control = (control.mean(axis=-1) + 4) / 5
        return near_target * small_control

    return reward


def place_target(target_xy: tuple[float, float]):
    def decorate(physics) -> None:
        physics.named.model.geom_pos["target"][:2] = target_xy

    return decorate


ROOMS = ("top_left", "top_right", "bottom_left", "bottom_right")


def room_of(xy: np.ndarray) -> np.ndarray:
    """Index into :data:`ROOMS` of each (x, y) position."""
    xy = np.asarray(xy)
    right = xy[..., 0] >= 0
    bottom = xy[..., 1] < 0
    return right.astype(int) + 2 * bottom.astype(int)


def room_fractions(obs: np.ndarray) -> dict[str, float]:
    """Share of the observations (N, 4) in each room."""
    rooms = room_of(obs[:, :2])
    return {name: float((rooms == i).mean()) for i, name in enumerate(ROOMS)}


DOMAIN = register_domain(
    Domain(
        name="point_mass_maze",
        observation_dim=4,
        action_dim=2,
        episode_length=1000,
        n_sub_steps=1,
        make_physics=make_physics,
        observe=observe,
        sample_initial_state=sample_initial_state,
        base_task=base_task,
        exploration_features=lambda obs: obs[..., :2],
        exploration_cell=(0.03, 0.03),
        exploration_names=("x", "y"),
        bound_fields=("geom_xpos",),
        description="ExORL four-room maze: 4-D observation (position, velocity), 2-D force",
        # 1M transitions; the data the shipped maze models were trained on
        collect_recipe=dict(episodes=1000, draw_all_resets=True),
        camera="fixed",
        partition=StatePartition("room", room_fractions),
        tasks={
            name: Task(
                "point_mass_maze",
                name,
                reach_reward(xy),
                f"reach the target at {xy} (margin 0.015)",
                decorate=place_target(xy),
            )
            for name, xy in TARGETS.items()
        },
    )
)
