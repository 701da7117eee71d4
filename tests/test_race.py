import numpy as np
import pytest
import torch

from fastbfm.adapt.race import Race, RaceConfig, race_seeds
from fastbfm.bfm.nn import project_to_sphere
from fastbfm.envs import get_task
from fastbfm.errors import FastBFMError
from fastbfm.rollout import evaluate_latent
from tests.test_lola import GoalToyBFM, _prompt

TASK = "point_mass_maze:reach_top_left"
# a bracket of 16 latents x 100 steps, 4 x 250 steps, then 2 finalists x 1000 steps from 2 start states
SMALL = RaceConfig(episodes=10, stages=((16, 100, 1), (4, 250, 1), (2, 1000, 2)), sigmas=(0.3, 0.6), screen=0, eval_episodes=2, confidence=None)


def test_race_climbs_towards_the_known_optimum_within_budget():
    task, model = get_task(TASK), GoalToyBFM()
    start = _prompt([-1.25, 0.75, 1.0])
    curve = race_seeds(model, task, start, SMALL, [0])[0]
    optimum = evaluate_latent(model, task, project_to_sphere(torch.tensor([-1.0, 1.0, 1.0])), 2).mean()
    # a bracket costs 1.6 + 1 + 4 = 6.6 episodes; the 3.4 left cannot pay even for a final, so the race stops
    np.testing.assert_allclose(curve.episodes, [0, 1.6, 2.6, 6.6])
    # the incumbent moves only after the full episodes of a bracket's last stage
    assert curve.returns[0] == curve.returns[1] == curve.returns[2]
    assert curve.returns[-1] > curve.returns[0] + 0.3 * (optimum - curve.returns[0])
    torch.testing.assert_close(curve.z.norm(), torch.tensor(3.0).sqrt())


def test_a_bracket_the_budget_cannot_pay_for_is_not_started():
    from dataclasses import replace

    task, model = get_task(TASK), GoalToyBFM()
    start = _prompt([-1.25, 0.75, 1.0])
    # 12 episodes: one bracket (6.6) fits, the 5.4 left do not pay for a second, whose final alone costs 4
    curve = race_seeds(model, task, start, replace(SMALL, episodes=12), [0])[0]
    np.testing.assert_allclose(curve.episodes, [0, 1.6, 2.6, 6.6])
    race = Race(model, start, replace(SMALL, episodes=14), seed=0, episode_length=1000)
    assert not race.done
    race.spent = 7000  # 7 episodes left: a whole bracket fits
    assert not race.done
    race.spent = 7500
    assert race.done
    with pytest.raises(FastBFMError, match="bracket costs 6.6 episodes, more than the budget of 5"):
        Race(model, start, replace(SMALL, episodes=5), seed=0, episode_length=1000)


def test_race_keeps_the_incumbent_when_no_finalist_beats_it():
    """Started at the optimum, every candidate is worse on the same episodes: the policy never moves."""
    task, model = get_task(TASK), GoalToyBFM()
    start = _prompt([-1.0, 1.0, 1.0])
    curve = race_seeds(model, task, start, SMALL, [0])[0]
    torch.testing.assert_close(curve.z, start.z)
    assert curve.returns[-1] == curve.returns[0]


def test_race_is_reproducible_and_seeds_in_lockstep_equal_lone_runs():
    task, start = get_task(TASK), _prompt([-1.25, 0.75, 1.0])
    together = race_seeds(GoalToyBFM(), task, start, SMALL, [4, 5])
    for seed, curve in zip([4, 5], together):
        alone = race_seeds(GoalToyBFM(), task, start, SMALL, [seed])[0]
        assert curve.returns == alone.returns
        torch.testing.assert_close(curve.z, alone.z)


def test_race_rounds_share_start_states_within_each_start_group():
    model, start = GoalToyBFM(), _prompt([-1.25, 0.75, 1.0])
    race = Race(model, start, SMALL, seed=0, episode_length=1000)
    assert (race.rollouts, race.next_horizon()) == (16, 100)
    np.testing.assert_array_equal(race.start_groups(), np.zeros(16))
    race.stage = 2
    race.latents = race.latents[:2]
    race._layout()
    assert (race.rollouts, race.next_horizon()) == (4, 1000)
    np.testing.assert_array_equal(race.start_groups(), [0, 0, 1, 1])  # both finalists from both starts


def test_race_config_rejects_bad_stages():
    with pytest.raises(FastBFMError, match="never grow"):
        RaceConfig(stages=((4, 100, 1), (8, 250, 1)))
    with pytest.raises(FastBFMError, match="triples"):
        RaceConfig(stages=((4, 100),))
    with pytest.raises(FastBFMError, match="sigmas"):
        RaceConfig(sigmas=())


def test_the_critic_screen_keeps_the_incumbent_and_the_highest_valued_latents():
    from dataclasses import replace

    model, start = GoalToyBFM(), _prompt([-1.25, 0.75, 1.0])
    race = Race(model, start, replace(SMALL, screen=200), seed=0, episode_length=1000)
    drawn = race.latents.clone()
    assert len(drawn) == 201 and race.rollouts == 16
    obs = np.array([[0.1, -0.1, 0.0, 0.0]], np.float32)
    race.propose(obs)
    assert len(race.latents) == 16 and torch.equal(race.latents[0], start.z)
    o = torch.from_numpy(obs).expand(len(drawn), -1)
    value = model.q_value(o, model.act(o, drawn, mean=True), drawn, start.w.expand(len(drawn), -1), 0.5)
    expected = torch.argsort(value[1:], descending=True)[:15] + 1
    torch.testing.assert_close(race.latents[1:], drawn[expected.sort().values])
