import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

import fastbfm.gym as fgym
from fastbfm.bfm.fb import FBModel, FBModelConfig
from tests.model_helpers import with_random_biases


def test_every_task_is_registered():
    ids = fgym.register_all()
    assert len(ids) == 16 and "fastbfm/walker-run-v0" in ids and "fastbfm/point_mass_maze-reach_top_left-v0" in ids
    env = gym.make("fastbfm/quadruped-jump-v0")
    assert env.observation_space.shape == (78,) and env.action_space.shape == (12,)


def test_passes_gymnasiums_checker_and_reseeds_identically():
    env = gym.make("fastbfm/cheetah-run_backward-v0").unwrapped
    check_env(env, skip_render_check=True)
    a, _ = env.reset(seed=3)
    b, _ = env.reset(seed=3)
    c, _ = env.reset(seed=4)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_latent_policy_drives_a_gymnasium_loop_to_truncation():
    torch.manual_seed(0)
    model = FBModel(FBModelConfig(obs_dim=4, action_dim=2, z_dim=8, hidden_dim=16, backward_hidden_dim=16))
    policy = fgym.LatentPolicy(model, model.sample_z(1)[0])
    env = gym.make("fastbfm/point_mass_maze-reach_top_left-v0")
    obs, _ = env.reset(seed=0)
    steps, done = 0, False
    while not done:
        obs, reward, terminated, truncated, _ = env.step(policy(obs))
        assert 0 <= reward <= 1 and not terminated
        steps, done = steps + 1, truncated
    assert steps == 1000
    assert policy(np.zeros((3, 4))).shape == (3, 2)


def test_step_before_reset_is_an_error():
    with pytest.raises(RuntimeError, match="reset"):
        fgym.FastBFMEnv("walker:stand").step(np.zeros(6))


def _adapters(model, prompt):
    from fastbfm.adapt.finetune import Finetune, FinetuneConfig
    from fastbfm.adapt.lola import LoLA, LoLAConfig
    from fastbfm.adapt.opti import OptiConfig, OptimisticInference
    from fastbfm.adapt.rela import ReLA, ReLAConfig
    from fastbfm.adapt.search import LatentSearch, SearchConfig

    small = {"episodes": 2, "updates_per_episode": 4, "batch_size": 32}
    return {
        "lola": LoLA(model, prompt, LoLAConfig(num_candidates=2, horizon=250), 0, 1000),
        "cmaes-lookahead": LatentSearch(model, prompt, SearchConfig(population=2, horizon=250), 0, 1000),
        "opti-ucb": OptimisticInference(model, None, OptiConfig(rule="ucb", candidates=4), 0, 1000),
        "rela-state": ReLA(model, prompt, ReLAConfig(latent="state", hidden_dim=16, **small), 0, 1000),
        "finetune": Finetune(model, prompt, FinetuneConfig(**small), 0, 1000),
    }


@pytest.mark.parametrize("method", ["lola", "cmaes-lookahead", "opti-ucb", "rela-state", "finetune"])
def test_every_adapter_runs_on_a_gymnasium_environment(method):
    """The adapter interface needs no fastbfm simulator: a plain Gymnasium loop drives every method."""
    from fastbfm.adapt.zero_shot import TaskPrompt

    torch.manual_seed(0)
    model = with_random_biases(FBModel(FBModelConfig(obs_dim=4, action_dim=2, z_dim=6, hidden_dim=16, backward_hidden_dim=16)))
    model.discount = 0.99  # an untrained model has none; LoLA bootstraps with it
    w = torch.tensor([1.0, -1.0, 0.5, 0.0, 0.0, 2.0])
    adapter = _adapters(model, TaskPrompt(z=model.project(w), w=w, num_samples=1, num_rewarded=1))[method]
    obs = np.random.default_rng(0).uniform(-0.3, 0.3, (3, 4)).astype(np.float32)
    before = adapter.policy(obs)
    env = fgym.FastBFMEnv("point_mass_maze:reach_top_left")
    assert fgym.run_adapter(adapter, env, episodes=2) == 2000
    after = adapter.policy(obs)
    assert after.shape == (3, 2) and np.isfinite(after).all() and np.abs(after).max() <= 1
    assert not np.allclose(before, after)  # the rounds changed the policy


def test_the_gymnasium_driver_refuses_reset_free_rounds():
    from fastbfm.adapt.lola import LoLA, LoLAConfig
    from fastbfm.adapt.zero_shot import TaskPrompt

    model = FBModel(FBModelConfig(obs_dim=4, action_dim=2, z_dim=6, hidden_dim=16, backward_hidden_dim=16))
    model.discount = 0.99  # an untrained model has none; LoLA bootstraps with it
    w = torch.ones(6)
    adapter = LoLA(model, TaskPrompt(z=model.project(w), w=w, num_samples=1, num_rewarded=1), LoLAConfig(num_candidates=2, horizon=300, reset_free=True), 0, 1000)
    with pytest.raises(ValueError, match="reset-free"):
        fgym.run_adapter(adapter, fgym.FastBFMEnv("point_mass_maze:reach_top_left"), episodes=2)
