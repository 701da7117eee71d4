import numpy as np
import pytest
import torch

from fastbfm.adapt.opti import LinearPosterior, OptiConfig, opti_seeds
from fastbfm.adapt.zero_shot import TaskPrompt
from fastbfm.bfm.fb import FBModel, FBModelConfig
from fastbfm.envs import get_task
from fastbfm.errors import FastBFMError
from tests.model_helpers import with_random_biases


def test_posterior_recovers_the_true_weights_and_samples_its_own_covariance():
    rng = np.random.default_rng(0)
    w_true = rng.standard_normal(5)
    posterior = LinearPosterior(np.zeros(5), prior_precision=1.0, noise_std=0.1)
    for _ in range(4):  # streaming updates equal one batch update
        phi = rng.standard_normal((500, 5))
        posterior.update(phi, phi @ w_true + 0.1 * rng.standard_normal(500))
    np.testing.assert_allclose(posterior.mean, w_true, atol=0.01)
    draws = posterior.sample(20_000, rng)
    np.testing.assert_allclose(draws.mean(0), posterior.mean, atol=3e-4)
    np.testing.assert_allclose(np.cov(draws.T), posterior.cov, rtol=0.1, atol=1e-7)


def test_posterior_with_no_data_is_the_prior():
    posterior = LinearPosterior(np.array([1.0, -2.0]), prior_precision=4.0, noise_std=1.0)
    np.testing.assert_allclose(posterior.mean, [1.0, -2.0])
    np.testing.assert_allclose(posterior.cov, np.eye(2) / 4)


@pytest.mark.parametrize("rule", ["thompson", "ucb"])
def test_opti_respects_its_budget_and_is_reproducible_in_lockstep(rule):
    torch.manual_seed(0)
    model = with_random_biases(FBModel(FBModelConfig(obs_dim=4, action_dim=2, z_dim=6, hidden_dim=16, backward_hidden_dim=16)))
    task = get_task("point_mass_maze:reach_top_left")
    config = OptiConfig(rule=rule, episodes=2, eval_episodes=1, candidates=4)
    together = opti_seeds(model, task, None, config, [1, 2])
    alone = opti_seeds(model, task, None, config, [2])[0]
    # batch size changes float rounding in the networks' matmuls, nothing else
    np.testing.assert_allclose(together[1].returns, alone.returns, rtol=1e-4, atol=1e-9)
    assert together[1].episodes == [0.0, 1.0, 2.0]
    torch.testing.assert_close(together[1].z, alone.z, atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(alone.z.norm(), torch.tensor(6.0).sqrt())


def test_warm_start_needs_a_prompt_and_starts_at_its_latent():
    torch.manual_seed(0)
    model = FBModel(FBModelConfig(obs_dim=4, action_dim=2, z_dim=6, hidden_dim=16, backward_hidden_dim=16))
    task = get_task("point_mass_maze:reach_top_left")
    with pytest.raises(FastBFMError, match="warm start needs"):
        opti_seeds(model, task, None, OptiConfig(warm_start=True, episodes=0), [0])
    w = torch.randn(6)
    prompt = TaskPrompt(z=model.project(w), w=w, num_samples=1, num_rewarded=1)
    curve = opti_seeds(model, task, prompt, OptiConfig(warm_start=True, episodes=0, eval_episodes=1), [0])[0]
    torch.testing.assert_close(curve.z, model.project(w))


REWARD_EMBEDDING = np.array([-1.0, 1.0, 0.5])


class LinearFeatureToyBFM:
    """GoalToyBFM (steers to 0.15 * z[:2]) with features phi(s') = (x / 0.15, y / 0.15, 1): a reward
    phi^T w* has the known embedding w*, and pi(project(w*)) parks where that reward is nearly highest."""

    obs_dim, action_dim, z_dim = 4, 2, 3
    discount = 0.99

    def __init__(self):
        from tests.test_lola import GoalToyBFM

        self.goal_policy = GoalToyBFM()

    def act(self, obs, z, mean=True, generator=None):
        return self.goal_policy.act(obs, z, mean)

    def project(self, z):
        return self.goal_policy.project(z)

    def features(self, obs):
        return torch.cat([obs[:, :2] / 0.15, torch.ones(obs.shape[0], 1)], -1)

    def successor_features(self, obs, action, z):
        # the policy parks at its goal: discounted features are those of the goal (one ensemble member)
        return torch.cat([z[:, :2], torch.ones(z.shape[0], 1)], -1).unsqueeze(0) / (1 - 0.98)


def _linear_reward(fields):
    from fastbfm.envs.point_mass_maze import POINTMASS_GEOM

    position = np.asarray(fields.geom_xpos)[..., POINTMASS_GEOM, :2]
    return position @ REWARD_EMBEDDING[:2] / 0.15 + REWARD_EMBEDDING[2]


@pytest.mark.parametrize("rule", ["thompson", "ucb"])
def test_label_free_opti_recovers_a_linear_reward_and_improves(rule):
    from fastbfm.bfm.nn import project_to_sphere
    from fastbfm.envs.registry import Task

    task = Task("point_mass_maze", "toy_linear", _linear_reward, "a reward linear in the toy's features")
    config = OptiConfig(rule=rule, episodes=3, eval_episodes=2, candidates=8)
    curve = opti_seeds(LinearFeatureToyBFM(), task, None, config, [0])[0]
    answer = project_to_sphere(torch.tensor(REWARD_EMBEDDING, dtype=torch.float32))
    assert torch.nn.functional.cosine_similarity(curve.z, answer, dim=0) > 0.99
    assert curve.returns[-1] > curve.returns[0] + 100  # from a prior draw to the reward's own latent
