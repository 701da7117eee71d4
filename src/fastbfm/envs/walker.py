"""The planar walker (dm_control's model and resets): 24-D observation, 6-D action, 1000 steps of 25 ms.

Tasks: dm_control's ``stand``, ``walk`` (1 m/s) and ``run`` (8 m/s), and ``flip`` as defined by the
zero-shot RL codebases (controllable_agent, HILP): standing reward times a bonus for torso angular
momentum about y of 5 or more.
"""

from __future__ import annotations

import numpy as np
from dm_control.suite import walker as dm_walker
from dm_control.utils import rewards

from fastbfm.envs.registry import Domain, Fields, Task, register_domain
from fastbfm.envs.suite_domains import LOCOMOTION_RECIPE, dm_reset_sampler

STAND_HEIGHT = 1.2
WALK_SPEED, RUN_SPEED, SPIN_SPEED = 1.0, 8.0, 5.0


def make_physics() -> dm_walker.Physics:
    return dm_walker.Physics.from_xml_string(*dm_walker.get_model_and_assets())


_P = make_physics()
TORSO = _P.model.name2id("torso", "body")
NBODY = _P.model.nbody
del _P


def observe(f: Fields) -> np.ndarray:
    xmat = np.asarray(f.xmat)
    orientations = xmat[..., 1:, :][..., [0, 2]].reshape(*xmat.shape[:-2], 2 * (NBODY - 1))
    height = np.asarray(f.xpos)[..., TORSO, 2:3]
    return np.concatenate([orientations, height, f.qvel], axis=-1)


def stand_reward(f: Fields) -> np.ndarray:
    standing = rewards.tolerance(np.asarray(f.xpos)[..., TORSO, 2], bounds=(STAND_HEIGHT, float("inf")), margin=STAND_HEIGHT / 2)
    upright = (1 + np.asarray(f.xmat)[..., TORSO, 8]) / 2
    return (3 * standing + upright) / 4


def move_reward(speed: float, forward: int = 1):
    def reward(f: Fields) -> np.ndarray:
        # sensordata[0] is the torso subtree's linear velocity along x (the model's only sensor).
        move = rewards.tolerance(
            forward * np.asarray(f.sensordata)[..., 0],
            bounds=(speed, float("inf")),
            margin=speed / 2,
            value_at_margin=0.5,
            sigmoid="linear",
        )
        return stand_reward(f) * (5 * move + 1) / 6

    return reward


def flip_reward(f: Fields) -> np.ndarray:
    spin = rewards.tolerance(
        np.asarray(f.subtree_angmom)[..., TORSO, 1], bounds=(SPIN_SPEED, float("inf")), margin=SPIN_SPEED, value_at_margin=0, sigmoid="linear"
    )
    return stand_reward(f) * (5 * spin + 1) / 6


class FlipTask(dm_walker.PlanarWalker):
    """Reference (per-physics) definition of ``flip``, in the codebases' own terms."""

    def __init__(self, random=None):
        super().__init__(move_speed=RUN_SPEED, random=random)

    def get_reward(self, physics):
        standing = rewards.tolerance(physics.torso_height(), bounds=(STAND_HEIGHT, float("inf")), margin=STAND_HEIGHT / 2)
        stand = (3 * standing + (1 + physics.torso_upright()) / 2) / 4
        spin = rewards.tolerance(
            physics.named.data.subtree_angmom["torso"][1], bounds=(SPIN_SPEED, float("inf")), margin=SPIN_SPEED, value_at_margin=0, sigmoid="linear"
        )
        return stand * (5 * spin + 1) / 6


def _walker(speed: float):
    return lambda random=None: dm_walker.PlanarWalker(move_speed=speed, random=random)


def exploration_features(obs: np.ndarray) -> np.ndarray:
    # torso height, forward velocity of the root, torso pitch (its orientation's xz entry)
    return np.stack([obs[..., 14], obs[..., 15], obs[..., 1]], axis=-1)


DOMAIN = register_domain(
    Domain(
        name="walker",
        observation_dim=24,
        action_dim=6,
        episode_length=1000,
        n_sub_steps=10,
        make_physics=make_physics,
        observe=observe,
        sample_initial_state=dm_reset_sampler(make_physics, _walker(0.0)),
        base_task=_walker(0.0),
        exploration_features=exploration_features,
        exploration_cell=(0.1, 0.5, 0.25),
        exploration_names=("torso height", "forward velocity", "torso pitch xz"),
        bound_fields=("xpos", "xmat", "sensordata", "subtree_angmom"),
        description="dm_control planar walker: body orientations, torso height, joint velocities; 6 torques",
        collect_recipe=LOCOMOTION_RECIPE,
        camera="side",  # dm_control's tracking side view
        tasks={
            "stand": Task("walker", "stand", stand_reward, "dm_control walker stand", reference=_walker(0.0)),
            "walk": Task("walker", "walk", move_reward(WALK_SPEED), "dm_control walker walk (1 m/s)", reference=_walker(WALK_SPEED)),
            "run": Task("walker", "run", move_reward(RUN_SPEED), "dm_control walker run (8 m/s)", reference=_walker(RUN_SPEED)),
            "flip": Task("walker", "flip", flip_reward, "stand and spin backwards (torso angular momentum >= 5)", reference=FlipTask),
        },
    )
)
