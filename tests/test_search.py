import numpy as np
import pytest
import torch

from fastbfm.adapt.search import SearchConfig, search_seeds
from fastbfm.bfm.nn import project_to_sphere
from fastbfm.envs import get_task
from fastbfm.errors import FastBFMError
from fastbfm.rollout import evaluate_latent
from tests.test_lola import GoalToyBFM, _prompt

TASK = "point_mass_maze:reach_top_left"


@pytest.mark.parametrize("method", ["cmaes", "cem"])
def test_search_climbs_towards_the_known_optimum_within_budget(method):
    task, model = get_task(TASK), GoalToyBFM()
    start = _prompt([-1.25, 0.75, 1.0])
    config = SearchConfig(method=method, episodes=24, population=6, sigma=0.3, eval_episodes=2, safe=None)
    curve = search_seeds(model, task, start, config, [0])[0]
    optimum = evaluate_latent(model, task, project_to_sphere(torch.tensor([-1.0, 1.0, 1.0])), 2).mean()
    np.testing.assert_array_equal(curve.episodes, [0, 6, 12, 18, 24])  # one episode per candidate
    assert curve.returns[-1] > curve.returns[0] + 0.3 * (optimum - curve.returns[0])
    torch.testing.assert_close(curve.z.norm(), torch.tensor(3.0).sqrt())


def test_lookahead_search_screens_more_latents_per_episode_and_climbs():
    """cmaes-lookahead: each candidate costs H steps (scored with LoLA's lookahead + bootstrap), so 6
    episodes buy 4 generations of 6 instead of 1; it still climbs towards the known optimum."""
    task, model = get_task(TASK), GoalToyBFM()
    start = _prompt([-1.25, 0.75, 1.0])
    config = SearchConfig(method="cmaes", episodes=6, population=6, sigma=0.3, horizon=250, eval_episodes=2, safe=None)
    curve = search_seeds(model, task, start, config, [0])[0]
    optimum = evaluate_latent(model, task, project_to_sphere(torch.tensor([-1.0, 1.0, 1.0])), 2).mean()
    np.testing.assert_allclose(curve.episodes, [0, 1.5, 3, 4.5, 6])
    assert curve.returns[-1] > curve.returns[0] + 0.3 * (optimum - curve.returns[0])
    with pytest.raises(FastBFMError, match="horizon"):
        SearchConfig(horizon=0)


@pytest.mark.parametrize("method", ["cmaes", "cem"])
def test_search_is_reproducible_and_seeds_in_lockstep_equal_lone_runs(method):
    task, start = get_task(TASK), _prompt([-1.25, 0.75, 1.0])
    config = SearchConfig(method=method, episodes=6, population=3, eval_episodes=1, safe=None)
    together = search_seeds(GoalToyBFM(), task, start, config, [4, 5])
    for seed, curve in zip([4, 5], together):
        alone = search_seeds(GoalToyBFM(), task, start, config, [seed])[0]
        assert curve.returns == alone.returns
        torch.testing.assert_close(curve.z, alone.z)
    assert together[0].returns != together[1].returns


def test_search_config_rejects_bad_values():
    with pytest.raises(FastBFMError, match="unknown search method"):
        SearchConfig(method="random")
    with pytest.raises(FastBFMError, match="population >= 2"):
        SearchConfig(population=1)


def test_headroom_oracle_finds_the_known_optimum_and_reports_zero_shot():
    from fastbfm.adapt.oracle import OracleConfig, headroom

    task, model = get_task(TASK), GoalToyBFM()
    start = _prompt([-1.25, 0.75, 1.0])
    config = OracleConfig(num_latents=48, screen_episodes=1, finalists=4, eval_episodes=2)
    result = headroom(model, task, start, config)
    zero_shot = evaluate_latent(model, task, start.z, 2).mean()
    optimum = evaluate_latent(model, task, project_to_sphere(torch.tensor([-1.0, 1.0, 1.0])), 2).mean()
    assert result.zero_shot == pytest.approx(zero_shot)
    assert result.best >= result.zero_shot and result.best > 0.5 * optimum
    assert len(result.screened) == 49
    np.testing.assert_allclose(evaluate_latent(model, task, result.best_z, 2).mean(), result.best)


@pytest.mark.parametrize("score", ["return", "discounted"])
def test_lookahead_search_scores_as_lola_does(score):
    """cmaes-lookahead's fitness is LoLA's lookahead score of the chosen form (before: always the discounted one)."""
    from fastbfm.adapt.lola import lookahead_scores
    from fastbfm.adapt.search import LatentSearch

    model, start = GoalToyBFM(), _prompt([-1.25, 0.75, 1.0])
    config = SearchConfig(method="cmaes", episodes=6, population=3, horizon=100, score=score, safe=None)
    search = LatentSearch(model, start, config, seed=0, episode_length=1000)
    search.propose(np.zeros((3, 4), np.float32))
    rewards = np.random.default_rng(0).random((100, 3))
    last = np.zeros((3, 4), np.float32)
    search.observe(None, None, rewards, np.stack([last] * 100))
    remaining = 900 if score == "return" else None
    np.testing.assert_allclose(search.fitness, lookahead_scores(model, rewards, last, search.z, search.w, 0.99, 0.5, remaining))
    if score == "return":  # the episode's return estimated from 100 steps: the rewards plus 900 more at the recent rate
        np.testing.assert_allclose(search.fitness, rewards.sum(0) + 900 * rewards[-50:].mean(0) / 2)
    with pytest.raises(FastBFMError, match="lookahead score"):
        SearchConfig(score="median")
