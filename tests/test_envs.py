from pathlib import Path

import numpy as np
import pytest
from dm_control import suite

from fastbfm.data.relabel import relabel, relabel_per_sample
from fastbfm.envs import BatchedEnv, Task, get_domain, get_task, list_domains, list_tasks, make_env, walker
from fastbfm.envs.point_mass_maze import POINTMASS_GEOM, TARGETS
from fastbfm.errors import FastBFMError

MAZE_TASKS = [f"point_mass_maze:{t}" for t in TARGETS]
SPECS = {"point_mass_maze": (4, 2), "walker": (24, 6), "cheetah": (17, 6), "quadruped": (78, 12)}
# Tasks that dm_control ships itself: compared against dm_control's own environment.
DM_CONTROL_TASKS = ["walker:stand", "walker:walk", "walker:run", "cheetah:run", "quadruped:walk", "quadruped:run"]
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _rollout(env, action_dim, seed, steps=None, hold=20):
    """Random actions held for ``hold`` steps; returns states, actions, rewards, observations (float32)."""
    ts = env.reset()
    rng = np.random.default_rng(seed)
    states, actions, rewards, obs = [env.physics.get_state()], [], [], [ts.observation["observations"]]
    action = rng.uniform(-1, 1, action_dim)
    while not ts.last() and (steps is None or len(actions) < steps):
        if len(actions) % hold == 0:
            action = rng.uniform(-1, 1, action_dim)
        ts = env.step(action)
        states.append(env.physics.get_state())
        actions.append(action)
        rewards.append(ts.reward)
        obs.append(ts.observation["observations"])
    return np.array(states), np.array(actions), np.array(rewards), np.array(obs, dtype=np.float32)


def _check_batched_matches(task, states, actions, rewards, obs):
    """BatchedEnv from the same start, same actions: identical observations, rewards within 1e-6."""
    env = BatchedEnv(task, num_envs=3)
    batch_obs = env.set_state(np.repeat(states[:1], 3, axis=0))
    np.testing.assert_array_equal(batch_obs[0], obs[0])
    for t, action in enumerate(actions):
        batch_obs, batch_reward = env.step(np.repeat(action[None], 3, axis=0))
        np.testing.assert_array_equal(batch_obs[1], obs[t + 1])
        assert abs(batch_reward[2] - rewards[t]) < 1e-6
    np.testing.assert_allclose(env.get_state()[0], states[-1], atol=1e-9, rtol=0)


def test_sixteen_tasks_with_the_field_specs():
    assert list_domains() == sorted(SPECS)
    assert len(list_tasks()) == 16
    for name, (obs_dim, action_dim) in SPECS.items():
        domain = get_domain(name)
        assert (domain.observation_dim, domain.action_dim, domain.episode_length) == (obs_dim, action_dim, 1000)
        assert len(domain.tasks) == 4


@pytest.mark.parametrize("domain_name", sorted(SPECS))
def test_dm_control_episodes_last_1000_steps(domain_name):
    env = make_env(list_tasks(domain_name)[0], seed=0)
    ts, steps = env.reset(), 0
    assert ts.observation["observations"].shape == (SPECS[domain_name][0],)
    while not ts.last():
        ts = env.step(np.zeros(SPECS[domain_name][1]))
        steps += 1
    assert steps == 1000


def test_maze_target_geometry():
    env = make_env("point_mass_maze:reach_top_left", seed=0)
    assert env.physics.model.geom(POINTMASS_GEOM).name == "pointmass"
    np.testing.assert_allclose(env.physics.named.model.geom_pos["target"][:2], TARGETS["reach_top_left"])


@pytest.mark.parametrize("domain_name", sorted(SPECS))
def test_resets_are_seeded(domain_name):
    task = list_tasks(domain_name)[0]
    a = make_env(task, seed=1).reset().observation["observations"]
    b = make_env(task, seed=1).reset().observation["observations"]
    c = make_env(task, seed=2).reset().observation["observations"]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    sample = get_domain(domain_name).sample_initial_state
    np.testing.assert_array_equal(sample(np.random.default_rng(4), 3), sample(np.random.default_rng(4), 3))


def test_maze_starts_top_left():
    obs = make_env("point_mass_maze:reach_top_left", seed=1).reset().observation["observations"]
    assert obs[0] < -0.1 and obs[1] > 0.1


@pytest.mark.parametrize("task_name", DM_CONTROL_TASKS)
def test_rewards_and_observations_equal_dm_controls_own_environment(task_name):
    """dm_control's own suite environment (its own model file, task class and reward) against fastbfm's
    batched simulation and vectorised relabelling, on states of a real rollout."""
    domain_name, task = task_name.split(":")
    dm_env = suite.load(domain_name, task, task_kwargs={"random": 3}, environment_kwargs={"flat_observation": True})
    states, actions, rewards, obs = _rollout(dm_env, SPECS[domain_name][1], seed=3, steps=150)
    assert np.ptp(rewards) > 0  # the rollout visits states with different rewards
    np.testing.assert_allclose(relabel(get_task(task_name), states[1:], actions), rewards, atol=1e-6, rtol=0)
    _check_batched_matches(get_task(task_name), states, actions, rewards, obs)


@pytest.mark.parametrize("task_name", list_tasks())
def test_every_task_matches_its_reference_on_rollouts(task_name):
    """Custom tasks against their reference (dm_control-style) definitions; all tasks through make_env."""
    task = get_task(task_name)
    states, actions, rewards, obs = _rollout(make_env(task_name, seed=5), get_domain(task.domain).action_dim, seed=5, steps=120)
    np.testing.assert_allclose(relabel(task, states[1:], actions), rewards, atol=1e-6, rtol=0)
    np.testing.assert_allclose(relabel_per_sample(task, states[1:], actions), rewards, atol=1e-6, rtol=0)
    _check_batched_matches(task, states, actions, rewards, obs)


def test_maze_reward_reaches_one_at_target_and_decays():
    task = get_task("point_mass_maze:reach_bottom_right")
    tx, ty = TARGETS["reach_bottom_right"]
    states = np.array([[tx, ty, 0, 0], [tx + 0.03, ty, 0, 0], [-tx, ty, 0, 0]])
    reward = relabel(task, states, np.zeros((3, 2)))
    assert reward[0] == pytest.approx(1.0)
    assert reward[1] == pytest.approx(0.1)  # dm_control's gaussian tolerance at bound + margin
    assert reward[2] == 0.0


@pytest.mark.parametrize("domain_name", sorted(SPECS))
def test_state_save_and_restore(domain_name):
    """A saved batch state restored (in a batch or in dm_control) continues exactly as the original."""
    domain = get_domain(domain_name)
    rng = np.random.default_rng(0)
    env = BatchedEnv(domain, num_envs=2)
    env.set_state(domain.sample_initial_state(rng, 2))
    actions = rng.uniform(-1, 1, (30, 2, domain.action_dim))
    for a in actions[:10]:
        env.step(a)
    saved = env.get_state()
    for a in actions[10:]:
        expected, _ = env.step(a)
    restored = BatchedEnv(domain, num_envs=2)
    restored.set_state(saved)
    for a in actions[10:]:
        obs, _ = restored.step(a)
    np.testing.assert_array_equal(obs, expected)
    dm_env = make_env(list_tasks(domain_name)[0], seed=0)
    dm_env.reset()
    with dm_env.physics.reset_context():
        dm_env.physics.set_state(saved[1])
    for a in actions[10:]:
        ts = dm_env.step(a[1])
    np.testing.assert_array_equal(np.asarray(ts.observation["observations"], np.float32), expected[1])


@pytest.fixture
def examples_on_path(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))


def test_user_reward_works_like_a_builtin_task(examples_on_path):
    task = get_task("walker:my_rewards:walk_backward")
    assert not task.vectorized and task.full_name == "walker:my_rewards:walk_backward"
    states, actions, rewards, obs = _rollout(make_env(task, seed=2), 6, seed=2, steps=100)
    np.testing.assert_allclose(relabel(task, states[1:], actions), rewards, atol=1e-12)
    _check_batched_matches(task, states, actions, rewards, obs)
    # it is the built-in walk reward with the speed's sign flipped
    backward = Task("walker", "backward", walker.move_reward(walker.WALK_SPEED, forward=-1))
    np.testing.assert_allclose(relabel(backward, states[1:], actions), rewards, atol=1e-12)


@pytest.mark.parametrize("name", ["walk_slow", "flip_forward"])
def test_tuning_rewards_work_like_builtin_tasks(examples_on_path, name):
    task = get_task(f"walker:my_rewards:{name}")
    states, actions, rewards, obs = _rollout(make_env(task, seed=3), 6, seed=3, steps=100)
    assert np.all((rewards >= 0) & (rewards <= 1)) and rewards.max() > 0
    np.testing.assert_allclose(relabel(task, states[1:], actions), rewards, atol=1e-12)
    _check_batched_matches(task, states, actions, rewards, obs)


@pytest.mark.parametrize(
    "name, message",
    [
        ("walker:no_such_module_xyz:f", "cannot import the reward module"),
        ("walker:my_rewards:missing", "has no attribute 'missing'"),
        ("walker:my_rewards:STAND_HEIGHT", "neither a Task nor a function"),
        ("walker2:run", "unknown domain"),
        ("point_mass_maze:reach_middle", "unknown task"),
        ("point_mass_maze", "domain:task"),
        (":x", "domain:task"),
    ],
)
def test_bad_task_names_raise_clear_errors(examples_on_path, name, message):
    with pytest.raises(FastBFMError, match=message):
        get_task(name)


def test_user_module_failing_at_import_is_reported(tmp_path, monkeypatch):
    (tmp_path / "broken_rewards.py").write_text("raise RuntimeError('boom')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(FastBFMError, match="failed to import: RuntimeError: boom"):
        get_task("walker:broken_rewards:f")
