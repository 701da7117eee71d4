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
