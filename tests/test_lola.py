import numpy as np
import torch

from fastbfm.adapt.lola import LoLAConfig, lola
from fastbfm.adapt.zero_shot import TaskPrompt
from fastbfm.bfm.nn import project_to_sphere
from fastbfm.envs import get_task
from fastbfm.rollout import evaluate_latent


class GoalToyBFM:
    """A hand-made BFM on the maze: latent z (norm sqrt 3) steers to the point 0.15 * z[:2].

    reach_top_left is solved exactly by z = (-1, 1, +-1); the critic knows nothing (zero).
    """

    obs_dim, action_dim, z_dim = 4, 2, 3
    discount = 0.99

    def act(self, obs, z, mean=True, generator=None):
        goal = 0.15 * z[:, :2]
        return (20 * (goal - obs[:, :2]) - 5 * obs[:, 2:]).clamp(-1, 1)

    def q_value(self, obs, action, z, z_reward, pessimism=0.5):
        return torch.zeros(obs.shape[0])

    def project(self, z):
        return project_to_sphere(z)


def _prompt(z):
    z = project_to_sphere(torch.tensor(z))
    return TaskPrompt(z=z, w=z, num_samples=0, num_rewarded=0)


def test_lola_climbs_towards_the_known_optimum():
    task = get_task("point_mass_maze:reach_top_left")
    model = GoalToyBFM()
    start = _prompt([-1.25, 0.75, 1.0])  # steers 0.04 away from the target: a low but non-zero return
    config = LoLAConfig(episodes=24, num_candidates=4, horizon=1000, sigma=0.1, lr=0.05, eval_episodes=2, seed=0, safe=None)
    curve = lola(model, task, start, config)
    optimum = evaluate_latent(model, task, project_to_sphere(torch.tensor([-1.0, 1.0, 1.0])), 2).mean()
    assert len(curve.returns) == 24 // 4 + 1
    assert curve.episodes[-1] <= config.episodes
    assert curve.returns[-1] > curve.returns[0] + 0.3 * (optimum - curve.returns[0])
    torch.testing.assert_close(curve.z.norm(), torch.tensor(3.0).sqrt())


def test_lola_is_reproducible_with_a_seed():
    task = get_task("point_mass_maze:reach_top_left")
    config = LoLAConfig(episodes=4, num_candidates=2, horizon=500, sigma=0.1, eval_episodes=1, seed=3, safe=None)
    a = lola(GoalToyBFM(), task, _prompt([-1.25, 0.75, 1.0]), config)
    b = lola(GoalToyBFM(), task, _prompt([-1.25, 0.75, 1.0]), config)
    assert a.returns == b.returns
    torch.testing.assert_close(a.z, b.z)
    np.testing.assert_array_equal(a.episodes, [0, 1, 2, 3, 4])


def test_seeds_in_lockstep_equal_lone_runs():
    from fastbfm.adapt.lola import lola_seeds

    task = get_task("point_mass_maze:reach_top_left")
    config = LoLAConfig(episodes=3, num_candidates=2, horizon=500, sigma=0.1, eval_episodes=2, safe=None)
    together = lola_seeds(GoalToyBFM(), task, _prompt([-1.25, 0.75, 1.0]), config, [5, 6])
    for seed, curve in zip([5, 6], together):
        alone = lola(GoalToyBFM(), task, _prompt([-1.25, 0.75, 1.0]), LoLAConfig(**{**config.__dict__, "seed": seed}))
        np.testing.assert_allclose(curve.returns, alone.returns, rtol=1e-9)
        torch.testing.assert_close(curve.z, alone.z)


class ConstantCriticBFM(GoalToyBFM):
    """The toy BFM whose critic values every state at 50 (a reward rate of 1 at discount 0.98)."""

    discount = 0.98

    def q_value(self, obs, action, z, z_reward, pessimism=0.5):
        return torch.full((obs.shape[0],), 50.0)


def test_return_score_extrapolates_the_reward_rate_where_the_lookahead_ends():
    from fastbfm.adapt.lola import lookahead_scores

    model, z = ConstantCriticBFM(), torch.zeros(2, 3)
    H = 100  # latent 0 earns 1 then 0 (fell after 50 steps); latent 1 earns 0 then 1 (got up late)
    rewards = np.zeros((H, 2))
    rewards[:50, 0], rewards[50:, 1] = 1.0, 1.0
    last_obs = np.zeros((2, 4), np.float32)
    scores = lookahead_scores(model, rewards, last_obs, z, z, 0.98, 0.5, remaining=900, window=50)
    # 50 earned, then 900 steps at the mean of the last 50 steps' rate (0 or 1) and the critic's (0.02 * 50 = 1)
    np.testing.assert_allclose(scores, [50 + 900 * 0.5, 50 + 900 * 1.0])
    discounted = lookahead_scores(model, rewards, last_obs, z, z, 0.98, 0.5)
    expected = [sum(0.98**t for t in range(50)), sum(0.98**t for t in range(50, 100))]
    np.testing.assert_allclose(discounted, np.array(expected) + 0.98**H * 50)
    assert discounted[0] > discounted[1] and scores[1] > scores[0]  # the discounted form prefers the early reward


def test_lola_rejects_an_unknown_score():
    import pytest

    from fastbfm.errors import FastBFMError

    with pytest.raises(FastBFMError, match="score is one of return, discounted"):
        LoLAConfig(score="undiscounted")
