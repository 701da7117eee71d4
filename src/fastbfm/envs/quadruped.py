"""The quadruped (dm_control's model and resets): 78-D observation, 12-D action, 1000 steps of 20 ms.

Tasks: dm_control's ``walk`` (0.5 m/s) and ``run`` (5 m/s), and the zero-shot RL codebases' ``stand``
(upright only) and ``jump`` (upright times a ramp of the centre-of-mass height towards 1 m).
The model is dm_control's ``make_model`` without walls, ball, terrain or rangefinders, with the run
task's floor (a plane's size is visual only, so all tasks share one model).
"""

from __future__ import annotations

import numpy as np
from dm_control.mujoco.wrapper.mjbindings import enums
from dm_control.suite import common
from dm_control.suite import quadruped as dm_quadruped
from dm_control.utils import rewards

from fastbfm.envs.registry import Domain, Fields, StatePartition, Task, register_domain
from fastbfm.envs.suite_domains import LOCOMOTION_RECIPE, dm_reset_sampler, sensor_indices, sensor_slice

WALK_SPEED, RUN_SPEED, JUMP_HEIGHT = 0.5, 5.0, 1.0
FLOOR_SIZE = 20 * RUN_SPEED


def make_physics() -> dm_quadruped.Physics:
    return dm_quadruped.Physics.from_xml_string(dm_quadruped.make_model(floor_size=FLOOR_SIZE), common.ASSETS)


_P = make_physics()
TORSO = _P.model.name2id("torso", "body")
_HINGES = np.nonzero(_P.model.jnt_type == enums.mjtJoint.mjJNT_HINGE)[0]
HINGE_QPOS = _P.model.jnt_qposadr[_HINGES]
HINGE_QVEL = _P.model.jnt_dofadr[_HINGES]
VELOCIMETER = sensor_slice(_P, "velocimeter")
COM_HEIGHT = sensor_slice(_P, "center_of_mass").start + 2
IMU = sensor_indices(_P, [enums.mjtSensor.mjSENS_GYRO, enums.mjtSensor.mjSENS_ACCELEROMETER])
FORCE_TORQUE = sensor_indices(_P, [enums.mjtSensor.mjSENS_FORCE, enums.mjtSensor.mjSENS_TORQUE])
del _P


def observe(f: Fields) -> np.ndarray:
    qpos, qvel, sensors = np.asarray(f.qpos), np.asarray(f.qvel), np.asarray(f.sensordata)
    return np.concatenate(
        [
            qpos[..., HINGE_QPOS],
            qvel[..., HINGE_QVEL],
            f.act,
            sensors[..., VELOCIMETER],
            np.asarray(f.xmat)[..., TORSO, 8:9],
            sensors[..., IMU],
            np.arcsinh(sensors[..., FORCE_TORQUE]),
        ],
        axis=-1,
    )


def upright(f: Fields) -> np.ndarray:
    return rewards.tolerance(np.asarray(f.xmat)[..., TORSO, 8], bounds=(1.0, float("inf")), sigmoid="linear", margin=2.0, value_at_margin=0)


def move_reward(speed: float):
    def reward(f: Fields) -> np.ndarray:
        forward = np.asarray(f.sensordata)[..., VELOCIMETER.start]
        move = rewards.tolerance(forward, bounds=(speed, float("inf")), margin=speed, value_at_margin=0.5, sigmoid="linear")
        return upright(f) * move

    return reward


def jump_reward(f: Fields) -> np.ndarray:
    height = np.asarray(f.sensordata)[..., COM_HEIGHT]
    jump = rewards.tolerance(height, bounds=(JUMP_HEIGHT, float("inf")), margin=JUMP_HEIGHT, value_at_margin=0.5, sigmoid="linear")
    return upright(f) * jump


UPRIGHT_OBS = 47
"""Index of the torso's zz (cosine of its tilt from vertical) in the observation."""
ORIENTATIONS = {"upright (zz > 0.9)": (0.9, np.inf), "tilted or on its side": (-0.5, 0.9), "upside down (zz < -0.5)": (-np.inf, -0.5)}


def orientation_fractions(obs: np.ndarray) -> dict[str, float]:
    """Share of observations (N, 78) per torso orientation. Every task rewards being upright, and from
    upside down no random action righted the body in 5 s (experiments/quadruped_diagnosis.py)."""
    zz = np.asarray(obs)[..., UPRIGHT_OBS]
    return {name: float(((zz > lo) & (zz <= hi)).mean()) for name, (lo, hi) in ORIENTATIONS.items()}


def righted_fraction(obs: np.ndarray, next_obs: np.ndarray, episode_starts: np.ndarray) -> tuple[int, float]:
    """Of the stored episodes that start upside down, how many, and the share that reach upright.
    ``obs``, ``next_obs``: (N, 78) transitions in episode order; ``episode_starts``: each episode's first row."""
    down = np.asarray(obs)[episode_starts, UPRIGHT_OBS] < -0.5
    reached = np.maximum.reduceat(np.asarray(next_obs)[:, UPRIGHT_OBS] > 0.9, episode_starts)
    return int(down.sum()), float(reached[down].mean()) if down.any() else 0.0


def righting_notes(obs: np.ndarray, next_obs: np.ndarray, episode_starts: np.ndarray) -> list[str]:
    down, share = righted_fraction(obs, next_obs, episode_starts)
    steps = len(obs) / max(len(episode_starts), 1)
    return [f"Of {down} stored episodes that start upside down (zz < -0.5), {share:.2%} reach upright (zz > 0.9) within their {steps:.0f} steps."]


def _upright_reference(physics) -> float:
    return rewards.tolerance(physics.torso_upright(), bounds=(1.0, float("inf")), sigmoid="linear", margin=2.0, value_at_margin=0)


class StandTask(dm_quadruped.Move):
    """Reference (per-physics) definition of ``stand``."""

    def __init__(self, random=None):
        super().__init__(desired_speed=0.0, random=random)

    def get_reward(self, physics):
        return _upright_reference(physics)


class JumpTask(dm_quadruped.Move):
    """Reference (per-physics) definition of ``jump``."""

    def __init__(self, random=None):
        super().__init__(desired_speed=0.0, random=random)

    def get_reward(self, physics):
        height = physics.named.data.sensordata["center_of_mass"][2]
        jump = rewards.tolerance(height, bounds=(JUMP_HEIGHT, float("inf")), margin=JUMP_HEIGHT, value_at_margin=0.5, sigmoid="linear")
        return _upright_reference(physics) * jump


def _move(speed: float):
    return lambda random=None: dm_quadruped.Move(desired_speed=speed, random=random)


def exploration_features(obs: np.ndarray) -> np.ndarray:
    # torso upright, forward and lateral velocity (local frame)
    return np.stack([obs[..., 47], obs[..., 44], obs[..., 45]], axis=-1)


DOMAIN = register_domain(
    Domain(
        name="quadruped",
        observation_dim=78,
        action_dim=12,
        episode_length=1000,
        n_sub_steps=4,
        make_physics=make_physics,
        observe=observe,
        sample_initial_state=dm_reset_sampler(make_physics, _move(0.0)),
        base_task=_move(0.0),
        exploration_features=exploration_features,
        exploration_cell=(0.25, 0.5, 0.5),
        exploration_names=("torso upright", "forward velocity", "lateral velocity"),
        bound_fields=("xmat", "sensordata"),
        description="dm_control quadruped: joint state, actuator activations, torso velocity and upright, IMU, toe forces",
        # its actuators are position servos: held random actions already are random postures
        collect_recipe={**LOCOMOTION_RECIPE, "posture_prob": 0.0},
        camera="y",  # keeps the body in view
        partition=StatePartition("torso orientation", orientation_fractions),
        dataset_notes=righting_notes,
        tasks={
            "stand": Task("quadruped", "stand", upright, "stay upright", reference=StandTask),
            "walk": Task("quadruped", "walk", move_reward(WALK_SPEED), "dm_control quadruped walk (0.5 m/s)", reference=_move(WALK_SPEED)),
            "run": Task("quadruped", "run", move_reward(RUN_SPEED), "dm_control quadruped run (5 m/s)", reference=_move(RUN_SPEED)),
            "jump": Task("quadruped", "jump", jump_reward, "upright with the centre of mass at 1 m or higher", reference=JumpTask),
        },
    )
)
