"""The half-cheetah (dm_control's model and resets): 17-D observation, 6-D action, 1000 steps of 10 ms.

Tasks: dm_control's ``run`` (10 m/s) and the zero-shot RL codebases' ``walk`` (2 m/s),
``walk_backward`` and ``run_backward``: a linear ramp of the torso subtree's forward (or backward) speed.
"""

from __future__ import annotations

import numpy as np
from absl import logging as absl_logging
from dm_control.suite import cheetah as dm_cheetah
from dm_control.utils import rewards

from fastbfm.envs.registry import Domain, Fields, Task, register_domain
from fastbfm.envs.suite_domains import LOCOMOTION_RECIPE, dm_reset_sampler

WALK_SPEED, RUN_SPEED = 2.0, 10.0


def make_physics() -> dm_cheetah.Physics:
    # dm_control's cheetah.xml uses the deprecated 'settotalmass' attribute; the warning is not ours to act on.
    verbosity = absl_logging.get_verbosity()
    absl_logging.set_verbosity(absl_logging.ERROR)
    try:
        return dm_cheetah.Physics.from_xml_string(*dm_cheetah.get_model_and_assets())
    finally:
        absl_logging.set_verbosity(verbosity)


def observe(f: Fields) -> np.ndarray:
    return np.concatenate([np.asarray(f.qpos)[..., 1:], f.qvel], axis=-1)


def speed_reward(speed: float, forward: int):
    def reward(f: Fields) -> np.ndarray:
        # sensordata[0]: the torso subtree's linear velocity along x (the model's only sensor).
        return rewards.tolerance(
            forward * np.asarray(f.sensordata)[..., 0], bounds=(speed, float("inf")), margin=speed, value_at_margin=0, sigmoid="linear"
        )

    return reward


class SpeedTask(dm_cheetah.Cheetah):
    """Reference (per-physics) definition of the custom cheetah tasks."""

    def __init__(self, speed: float, forward: int, random=None):
        super().__init__(random=random)
        self.speed, self.forward = speed, forward

    def get_reward(self, physics):
        return rewards.tolerance(
            self.forward * physics.speed(), bounds=(self.speed, float("inf")), margin=self.speed, value_at_margin=0, sigmoid="linear"
        )


def _custom(speed: float, forward: int):
    return lambda random=None: SpeedTask(speed, forward, random=random)


def _base(random=None):
    return dm_cheetah.Cheetah(random=random)


def exploration_features(obs: np.ndarray) -> np.ndarray:
    # forward velocity of the root, torso pitch, torso height
    return np.stack([obs[..., 8], obs[..., 1], obs[..., 0]], axis=-1)


DOMAIN = register_domain(
    Domain(
        name="cheetah",
        observation_dim=17,
        action_dim=6,
        episode_length=1000,
        n_sub_steps=1,
        make_physics=make_physics,
        observe=observe,
        sample_initial_state=dm_reset_sampler(make_physics, _base),
        base_task=_base,
        exploration_features=exploration_features,
        exploration_cell=(1.0, 0.5, 0.1),
        exploration_names=("forward velocity", "torso pitch", "torso height"),
        bound_fields=("sensordata",),
        description="dm_control half-cheetah: joint positions (without x) and velocities; 6 torques",
        collect_recipe=LOCOMOTION_RECIPE,
        camera="side",  # dm_control's tracking side view
        tasks={
            "walk": Task("cheetah", "walk", speed_reward(WALK_SPEED, 1), "forward at 2 m/s", reference=_custom(WALK_SPEED, 1)),
            "run": Task("cheetah", "run", speed_reward(RUN_SPEED, 1), "dm_control cheetah run (10 m/s)", reference=_base),
            "walk_backward": Task(
                "cheetah", "walk_backward", speed_reward(WALK_SPEED, -1), "backward at 2 m/s", reference=_custom(WALK_SPEED, -1)
            ),
            "run_backward": Task(
                "cheetah", "run_backward", speed_reward(RUN_SPEED, -1), "backward at 10 m/s", reference=_custom(RUN_SPEED, -1)
            ),
        },
    )
)
