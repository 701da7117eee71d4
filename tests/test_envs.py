import numpy as np
import pytest

from fastbfm.envs import BatchedEnv, get_domain, get_task, list_tasks, make_env
from fastbfm.envs.point_mass_maze import POINTMASS_GEOM, TARGETS
from fastbfm.errors import FastBFMError

MAZE_TASKS = [f"point_mass_maze:{t}" for t in TARGETS]


def _rollout(task_name, seed, steps=None):
    """A dm_control episode with random actions held for 20 steps; returns states, actions, rewards, obs."""
    env = make_env(task_name, seed=seed)
    ts = env.reset()
    rng = np.random.default_rng(seed)
    states, actions, rewards, obs = [env.physics.get_state()], [], [], [ts.observation["observations"]]
    action = rng.uniform(-1, 1, 2)
    while not ts.last() and (steps is None or len(actions) < steps):
        if len(actions) % 20 == 0:
            action = rng.uniform(-1, 1, 2)
        ts = env.step(action)
        states.append(env.physics.get_state())
        actions.append(action)
        rewards.append(ts.reward)
        obs.append(ts.observation["observations"])
    return np.array(states), np.array(actions), np.array(rewards), np.array(obs)


def test_maze_spec_and_episode_length():
    domain = get_domain("point_mass_maze")
    assert (domain.observation_dim, domain.action_dim, domain.episode_length) == (4, 2, 1000)
    assert sorted(list_tasks("point_mass_maze")) == sorted(MAZE_TASKS)
    env = make_env("point_mass_maze:reach_top_left", seed=0)
    assert env.physics.model.geom(POINTMASS_GEOM).name == "pointmass"
    np.testing.assert_allclose(env.physics.named.model.geom_pos["target"][:2], TARGETS["reach_top_left"])
    ts, steps = env.reset(), 0
    while not ts.last():
        ts = env.step(np.zeros(2))
        steps += 1
    assert steps == 1000
    assert ts.observation["observations"].shape == (4,)


def test_resets_are_seeded_and_start_top_left():
    a = make_env("point_mass_maze:reach_top_left", seed=1).reset().observation["observations"]
    b = make_env("point_mass_maze:reach_top_left", seed=1).reset().observation["observations"]
    c = make_env("point_mass_maze:reach_top_left", seed=2).reset().observation["observations"]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a[0] < -0.1 and a[1] > 0.1


@pytest.mark.parametrize("task_name", MAZE_TASKS)
def test_batched_env_matches_dm_control_on_rollouts(task_name):
    states, actions, rewards, obs = _rollout(task_name, seed=5)
    env = BatchedEnv(get_task(task_name), num_envs=3)
    batch_obs = env.set_state(np.repeat(states[:1], 3, axis=0))
    np.testing.assert_array_equal(batch_obs[0], obs[0])
    for t, action in enumerate(actions):
        batch_obs, batch_reward = env.step(np.repeat(action[None], 3, axis=0))
        np.testing.assert_array_equal(batch_obs[1], obs[t + 1])
        assert abs(batch_reward[2] - rewards[t]) < 1e-12


def test_reward_reaches_one_at_target_and_decays():
    task = get_task("point_mass_maze:reach_bottom_right")
    env = BatchedEnv(task, num_envs=3)
    tx, ty = TARGETS["reach_bottom_right"]
    env.set_state(np.array([[tx, ty, 0, 0], [tx + 0.03, ty, 0, 0], [-tx, ty, 0, 0]]))
    reward = env.relabel(task, env.get_state(), np.zeros((3, 2)))
    assert reward[0] == pytest.approx(1.0)
    assert reward[1] == pytest.approx(0.1)  # dm_control's gaussian tolerance at bound + margin
    assert reward[2] == 0.0


@pytest.mark.parametrize("name", ["walker2:run", "point_mass_maze:reach_middle", "point_mass_maze", ":x"])
def test_unknown_names_raise_clear_errors(name):
    with pytest.raises(FastBFMError, match="unknown|domain:task"):
        get_task(name)
