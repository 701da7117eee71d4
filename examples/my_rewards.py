"""User-defined rewards for fastbfm: ``--task walker:my_rewards:walk_backward`` (run from this folder).

A reward is a function of one dm_control ``Physics`` of the domain, in dm_control's own style: the
walker's physics has ``torso_height()``, ``torso_upright()`` and ``horizontal_velocity()``.

They are also the rewards outside the reported tasks on which fastbfm chooses its adaptation defaults
(the README's LoLA section).
"""

from dm_control.utils import rewards

from fastbfm.envs import Task
from fastbfm.envs.point_mass_maze import reach_reward

STAND_HEIGHT = 1.2
WALK_SPEED = 1.0
SPIN_SPEED = 5.0


def _stand(physics) -> float:
    standing = rewards.tolerance(physics.torso_height(), bounds=(STAND_HEIGHT, float("inf")), margin=STAND_HEIGHT / 2)
    upright = (1 + physics.torso_upright()) / 2
    return (3 * standing + upright) / 4


def walk_backward(physics) -> float:
    """Walker walking backward at 1 m/s: dm_control's walk reward with the speed's sign flipped."""
    move = rewards.tolerance(
        -physics.horizontal_velocity(), bounds=(WALK_SPEED, float("inf")), margin=WALK_SPEED / 2, value_at_margin=0.5, sigmoid="linear"
    )
    return _stand(physics) * (5 * move + 1) / 6


def walk_slow(physics) -> float:
    """Walker walking forward at 0.5 m/s, neither faster nor slower."""
    speed = WALK_SPEED / 2
    move = rewards.tolerance(physics.horizontal_velocity(), bounds=(speed, speed), margin=speed, value_at_margin=0.5, sigmoid="linear")
    return _stand(physics) * (5 * move + 1) / 6


def flip_forward(physics) -> float:
    """The benchmark's walker flip spinning the other way: torso angular momentum of -5 or less."""
    spin = rewards.tolerance(
        -physics.named.data.subtree_angmom["torso"][1], bounds=(SPIN_SPEED, float("inf")), margin=SPIN_SPEED, value_at_margin=0, sigmoid="linear"
    )
    return _stand(physics) * (5 * spin + 1) / 6


# Point-mass maze: reaching points other than the four tasks' room targets, with the tasks' own reward
# shape (vectorised, so relabelling runs at the built-in tasks' speed).
reach_top_left_corner = Task("point_mass_maze", "reach_top_left_corner", reach_reward((-0.25, 0.25)), "the top-left room's far corner")
reach_top_right_corner = Task("point_mass_maze", "reach_top_right_corner", reach_reward((0.25, 0.25)), "the top-right room's far corner")
reach_bottom_left_near = Task("point_mass_maze", "reach_bottom_left_near", reach_reward((-0.08, -0.08)), "the bottom-left room near the middle")
reach_bottom_right_corner = Task("point_mass_maze", "reach_bottom_right_corner", reach_reward((0.25, -0.25)), "the bottom-right room's far corner")
