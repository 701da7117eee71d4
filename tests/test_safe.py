"""Honest dips (paired intervals over start states) and safe deployment (a gate that moves the deployed
latent only on a won paired duel)."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from scipy import stats

from fastbfm.adapt.lola import LoLA, LoLAConfig, lola_seeds
from fastbfm.adapt.race import Race, RaceConfig
from fastbfm.adapt.safe import SafeConfig, SafeGate, paired_lower_bound
from fastbfm.bfm.nn import project_to_sphere
from fastbfm.envs import get_task
from fastbfm.errors import FastBFMError
from fastbfm.evaluate.paired import paired_curve, paired_interval
from fastbfm.rollout import evaluate_latent
from tests.test_lola import GoalToyBFM, _prompt

TASK = "point_mass_maze:reach_top_left"
AWAY = [-1.25, 0.75, 1.0]  # steers 0.04 away from the target: a low but non-zero return
OPTIMUM = [-1.0, 1.0, 1.0]
# LoLA with whole episodes per candidate, so that its mean climbs within a few iterations on the toy model
FAST = LoLAConfig(episodes=16, num_candidates=4, horizon=1000, sigma=0.1, lr=0.05, eval_episodes=2,
                  safe=SafeConfig(confidence=0.9, starts=2, duels=2))


# -- paired intervals ---------------------------------------------------------------------------------------

def test_paired_interval_of_a_constant_shift_is_that_shift_and_of_equal_returns_zero():
    rng = np.random.default_rng(0)
    ref = rng.normal(200, 90, (3, 20))
    mean, low, high = paired_interval(np.stack([ref, ref - 30], 1), ref)
    np.testing.assert_allclose(mean, [0, -30]) and np.testing.assert_allclose(low, [0, -30]) and np.testing.assert_allclose(high, [0, -30])


def test_paired_interval_covers_a_null_difference_about_as_often_as_its_confidence():
    rng = np.random.default_rng(1)
    covered = 0
    for _ in range(200):
        ref = rng.normal(200, 90, (2, 30))
        point = ref + rng.normal(0, 50, (2, 30))  # no true difference: only start-state noise
        _, low, high = paired_interval(point[:, None], ref, resamples=1000, seed=int(rng.integers(1 << 30)))
        covered += low[0] <= 0 <= high[0]
    assert 0.88 <= covered / 200 <= 0.99


def test_paired_curve_marks_a_dip_only_when_the_whole_interval_is_below_zero():
    rng = np.random.default_rng(2)
    ref = rng.normal(200, 90, (2, 30))
    noisy_low = ref + rng.normal(-5, 60, (2, 30))   # lower on average, within noise
    clear_dip = ref + rng.normal(-80, 20, (2, 30))  # lower on every start state
    result = paired_curve(np.stack([ref, noisy_low, clear_dip], 1))
    assert result["dips"] == [False, False, True]
    assert result["low"][1] < 0 < result["high"][1]


# -- the paired test of a duel ------------------------------------------------------------------------------

def test_paired_lower_bound_is_the_one_sided_t_bound():
    d = np.array([30.0, 10.0, 50.0, -5.0])
    expected = d.mean() - stats.t.ppf(0.95, 3) * d.std(ddof=1) / 2
    assert paired_lower_bound(d, 0.95) == pytest.approx(expected)
    assert paired_lower_bound(d, 0.95) < 0 < paired_lower_bound(d + 40, 0.95)
    with pytest.raises(FastBFMError, match="two pairs"):
        paired_lower_bound(np.array([1.0]), 0.95)


# -- the gate -----------------------------------------------------------------------------------------------

def test_safe_gate_deploys_a_better_latent_only_after_a_won_duel_and_spends_the_budget():
    task, model = get_task(TASK), GoalToyBFM()
    curve = lola_seeds(model, task, _prompt(AWAY), replace(FAST, eval_every=0), [0])[0]
    # 16 episodes: 6 for the duels (z_r and 2 challengers on 2 start states), 10 for LoLA in 2 halves of 5,
    # where one round of 4 fits: LoLA 4, duel 4 (with z_r), LoLA 4, duel 2; the 2 left fit no round
    np.testing.assert_allclose(curve.episodes, [0, 4, 8, 12, 14])
    moved = [i for i in range(1, len(curve.returns)) if curve.latents[i] != curve.latents[i - 1]]
    assert moved and all(curve.episodes[i] in (8.0, 14.0) for i in moved)  # only right after a duel
    assert curve.returns[-1] > curve.returns[0]


def test_safe_gate_never_deploys_a_worse_latent_while_its_method_explores():
    """Started at the optimum, LoLA with a reckless step wanders far off it; the deployed latent does not."""
    task, model = get_task(TASK), GoalToyBFM()
    start, reckless = _prompt(OPTIMUM), replace(FAST, sigma=0.5, lr=1.0)
    gated = lola_seeds(model, task, start, reckless, [0, 1, 2])
    free = lola_seeds(model, task, start, replace(reckless, safe=None), [0, 1, 2])
    held_out = lambda z: evaluate_latent(model, task, z, 20, seed=99).mean()  # noqa: E731
    for curve in gated:
        assert held_out(curve.z) >= held_out(start.z) - 5
        assert min(curve.returns) == curve.returns[0] or curve.returns[-1] >= curve.returns[0]
    assert min(held_out(curve.z) for curve in free) < held_out(start.z) - 100


def test_evaluation_never_informs_the_deployed_latent():
    task, start = get_task(TASK), _prompt(AWAY)
    one = lola_seeds(GoalToyBFM(), task, start, replace(FAST, eval_episodes=1), [3])[0]
    three = lola_seeds(GoalToyBFM(), task, start, replace(FAST, eval_episodes=3, eval_every=4), [3])[0]
    torch.testing.assert_close(one.z, three.z)


def test_duels_start_from_the_same_fixed_states_and_reuse_the_deployed_returns():
    model, start = GoalToyBFM(), _prompt(AWAY)
    gate = SafeGate(LoLA(model, start, FAST, seed=0, episode_length=1000), FAST.safe, FAST.episodes, 1000)
    assert (gate.rollouts, gate.next_horizon(), gate.fixed_starts) == (4, 1000, False)
    for _ in range(1):  # LoLA's first half: one round of 4 of its 5 episodes
        gate.propose(np.zeros((4, 4), np.float32))
        gate.observe(np.zeros((1000, 4, 4)), np.zeros((1000, 4, 2)), np.zeros((1000, 4)), np.zeros((1000, 4, 4)))
        gate.update()
    # the first duel: the challenger and z_r on 2 fixed start states
    assert gate.fixed_starts and gate.rollouts == 4
    np.testing.assert_array_equal(gate.start_groups(), [0, 1, 0, 1])
    rewards = np.zeros((1000, 4))
    rewards[:, :2] = 0.1  # the challenger earns 100 per episode more than z_r on both start states
    rewards[0, 1] += 5
    gate.propose(np.zeros((4, 4), np.float32))
    gate.observe(np.zeros((1000, 4, 4)), np.zeros((1000, 4, 2)), rewards, np.zeros((1000, 4, 4)))
    gate.update()
    assert gate.switches[0]["switched"] and torch.equal(gate.current_latent(), gate.challenger)
    np.testing.assert_allclose(gate.deployed_returns, [100, 105])


def test_safe_gate_refuses_a_budget_its_duels_would_use_up():
    with pytest.raises(FastBFMError, match="duels cost 6 episodes, the whole budget of 6"):
        SafeGate(LoLA(GoalToyBFM(), _prompt(AWAY), FAST, 0, 1000), FAST.safe, 6, 1000)
    with pytest.raises(FastBFMError, match="starts >= 2"):
        SafeConfig(starts=1)


def test_safe_race_needs_a_confident_paired_win_to_replace_its_incumbent():
    model, start = GoalToyBFM(), _prompt(AWAY)
    config = RaceConfig(episodes=10, stages=((2, 1000, 3),), screen=0, eval_episodes=1)
    for confidence, per_start, replaced in [(0.95, [[0, 20], [0, -5], [0, 30]], False),  # wins on average only
                                            (None, [[0, 20], [0, -5], [0, 30]], True),
                                            (0.95, [[0, 40], [0, 45], [0, 50]], True)]:
        race = Race(model, start, replace(config, confidence=confidence), seed=0, episode_length=1000)
        race.propose(np.zeros((6, 4), np.float32))
        challenger = race.latents[1].clone()
        race.observe(None, None, np.array(per_start, float).reshape(1, 6), np.zeros((1, 6, 4), np.float32))
        race.update()
        assert torch.equal(race.incumbent, challenger) == replaced
    with pytest.raises(FastBFMError, match="2 or more start states"):
        RaceConfig(stages=((4, 250, 1), (2, 1000, 1)))


def test_safe_gate_refuses_a_method_whose_first_round_does_not_fit_beside_the_duels():
    config = replace(FAST, num_candidates=8)  # a round of 8 episodes; 16 - 6 = 10 left, one round fits
    SafeGate(LoLA(GoalToyBFM(), _prompt(AWAY), config, 0, 1000), FAST.safe, 16, 1000)
    with pytest.raises(FastBFMError, match=r"first round \(8 episodes\) does not fit the 7 episodes"):
        SafeGate(LoLA(GoalToyBFM(), _prompt(AWAY), config, 0, 1000), FAST.safe, 13, 1000)
