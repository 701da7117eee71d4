import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

import fastbfm.gym as fgym
from fastbfm.bfm.fb import FBModel, FBModelConfig


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
