"""User-defined rewards for fastbfm: ``--task walker:my_rewards:walk_backward`` (run from this folder).

A reward is a function of one dm_control ``Physics`` of the domain, in dm_control's own style: the
walker's physics has ``torso_height()``, ``torso_upright()`` and ``horizontal_velocity()``.
"""

from dm_control.utils import rewards

STAND_HEIGHT = 1.2
WALK_SPEED = 1.0


def walk_backward(physics) -> float:
    """Walker walking backward at 1 m/s: dm_control's walk reward with the speed's sign flipped."""
    standing = rewards.tolerance(physics.torso_height(), bounds=(STAND_HEIGHT, float("inf")), margin=STAND_HEIGHT / 2)
    upright = (1 + physics.torso_upright()) / 2
    stand = (3 * standing + upright) / 4
    move = rewards.tolerance(
        -physics.horizontal_velocity(), bounds=(WALK_SPEED, float("inf")), margin=WALK_SPEED / 2, value_at_margin=0.5, sigmoid="linear"
    )
    return stand * (5 * move + 1) / 6
