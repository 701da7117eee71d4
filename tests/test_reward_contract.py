"""User rewards as untrusted code: one finite real number per call within the time limit; anything else
is a one-line error naming the reward, where it was called and what it returned or did."""

import math
import time

import numpy as np
import pytest

from cli_helpers import assert_one_line_error, run_cli
from fastbfm.envs import BatchedEnv, get_task, make_env
from fastbfm.envs import user_reward
from fastbfm.envs.user_reward import UserRewardError, finite_real, set_reward_timeout

REWARDS = '''
import math, sys, time
import numpy as np
from fastbfm.envs import Task

def good(physics):
    return np.float32(0.25)
def numeric_text(physics):
    return "0.5"
def array(physics):
    return np.array([0.1, 0.2])
def infinite(physics):
    return math.inf
def none(physics):
    return None
def exits(physics):
    sys.exit(0)
def raises(physics):
    raise KeyError("torso")
def hangs(physics):
    while True:
        time.sleep(0.01)
def swallows(physics):
    try:
        while True:
            time.sleep(0.01)
    except Exception:
        return 1.0

vector_shape = Task("point_mass_maze", "vector_shape", lambda fields: np.zeros(3))
# infinite exactly where x = 0: at every state a simulation holds before it was ever set
vector_inverse = Task("point_mass_maze", "vector_inverse", lambda fields: 1e-3 / np.abs(np.asarray(fields.qpos)[..., 0]))
vector_text = Task("point_mass_maze", "vector_text", lambda fields: ["a"] * len(np.atleast_2d(fields.qpos)))
'''


@pytest.fixture
def rewards_module(tmp_path, monkeypatch):
    (tmp_path / "contract_rewards.py").write_text(REWARDS)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    yield "point_mass_maze:contract_rewards"
    set_reward_timeout(user_reward.DEFAULT_TIMEOUT_S)


@pytest.mark.parametrize(
    "value, expected",
    [(0.5, 0.5), (3, 3.0), (True, 1.0), (np.float32(0.25), 0.25), (np.int64(2), 2.0), (np.array(0.75), 0.75)],
)
def test_one_finite_real_number_is_a_reward(value, expected):
    assert finite_real(value, "r") == expected


@pytest.mark.parametrize(
    "value, words",
    [("0.5", ["'0.5'", "a str"]), (None, ["None", "a NoneType"]), (np.array([0.1, 0.2]), ["shape (2,)"]),
     (math.nan, ["nan", "non-finite"]), (-math.inf, ["-inf", "non-finite"]), (1 + 2j, ["complex"]), ([0.5], ["a list"])],
)  # fmt: skip
def test_anything_else_is_refused_naming_the_value(value, words):
    with pytest.raises(UserRewardError) as error:
        finite_real(value, "walker:mine:r", "at step 3 of simulation 1")
    message = str(error.value)
    assert "walker:mine:r" in message and "at step 3 of simulation 1" in message and "\n" not in message
    for word in words:
        assert word in message, (word, message)


def _first_step_reward(task_name):
    env = BatchedEnv(get_task(task_name), 2)
    env.reset(np.random.default_rng(0))
    return env.step(np.zeros((2, 2)))[1]


@pytest.mark.parametrize(
    "name, words",
    [("numeric_text", ["returned '0.5'", "a str", "at step 1 of simulation 0"]),
     ("array", ["shape (2,)"]),
     ("infinite", ["returned inf", "non-finite"]),
     ("none", ["returned None"]),
     ("exits", ["called exit(0)"]),
     ("raises", ["failed at step 1 of simulation 0", "KeyError", "torso"]),
     ("vector_shape", ["shape (3,) for 2 simulations"]),
     ("vector_text", ["returned ['a', 'a']"])],
)  # fmt: skip
def test_a_broken_reward_stops_the_rollout_with_one_line(rewards_module, name, words):
    with pytest.raises(UserRewardError) as error:
        _first_step_reward(f"{rewards_module}:{name}")
    message = str(error.value)
    assert "\n" not in message and "contract_rewards" in message
    for word in words:
        assert word in message, (word, message)


def test_a_good_reward_is_a_float_everywhere(rewards_module):
    assert _first_step_reward(f"{rewards_module}:good").tolist() == [0.25, 0.25]
    env = make_env(f"{rewards_module}:good", seed=0)
    env.reset()
    assert env.step(np.zeros(2)).reward == 0.25


def test_a_reward_that_hangs_is_stopped_at_the_time_limit(rewards_module):
    set_reward_timeout(0.2)
    for name in ("hangs", "swallows"):  # `except Exception` inside the reward cannot swallow the limit
        start = time.monotonic()
        with pytest.raises(UserRewardError, match=r"took longer than 0.2 s at step 1 of simulation 0"):
            _first_step_reward(f"{rewards_module}:{name}")
        assert time.monotonic() - start < 5
    env = make_env(f"{rewards_module}:hangs", seed=0)  # dm_control's own loop: the clock says where
    env.reset()
    with pytest.raises(UserRewardError, match=r"took longer than 0.2 s at t = 0.020 s"):
        env.step(np.zeros(2))


def test_the_time_limit_is_a_global_option(rewards_module, maze_dataset_dir, monkeypatch, capsys):
    ev = ["eval", "--model", "maze-fb", "--data", maze_dataset_dir, "--samples", 50, "--episodes", 1]
    code, err = run_cli(["--reward-timeout", 0.3, *ev, "--task", f"{rewards_module}:hangs"], monkeypatch, capsys)
    assert_one_line_error(code, err, "contract_rewards:hangs took longer than 0.3 s", "on relabelled sample 0")
    code, err = run_cli(["--reward-timeout", -1, *ev, "--task", f"{rewards_module}:good"], monkeypatch, capsys)
    assert_one_line_error(code, err, "--reward-timeout")
    assert code == 2


@pytest.mark.parametrize(
    "name, words",
    [("exits", ["called exit(0)"]), ("numeric_text", ["returned '0.5'"]), ("raises", ["KeyError"]), ("infinite", ["non-finite"])],
)
def test_through_the_cli_every_broken_reward_exits_1_with_one_line(rewards_module, maze_dataset_dir, monkeypatch, capsys, name, words):
    ev = ["eval", "--model", "maze-fb", "--data", maze_dataset_dir, "--samples", 50, "--episodes", 1]
    code, err = run_cli([*ev, "--task", f"{rewards_module}:{name}"], monkeypatch, capsys)
    assert code == 1
    assert_one_line_error(code, err, f"contract_rewards:{name}", *words)


@pytest.mark.filterwarnings("ignore:divide by zero")
def test_a_vectorised_reward_is_checked_only_on_the_simulations_it_labels(rewards_module, maze_dataset_dir):
    """Relabelling fewer states than a batch holds: the spare simulations hold no state (x = 0 here),
    and their infinite rewards are not the user's error; a used one is, named with its samples."""
    from fastbfm.data.dataset import load_dataset
    from fastbfm.data.relabel import relabel

    data = load_dataset(maze_dataset_dir)
    task = get_task(f"{rewards_module}:vector_inverse")
    rewards = relabel(task, data.next_physics[:10], data.action[:10])
    assert rewards.shape == (10,) and np.isfinite(rewards).all()
    states = data.next_physics[:10].copy()
    states[3, 0] = 0.0
    with pytest.raises(UserRewardError, match=r"returned inf on relabelled samples 0 to 9 \(simulation 3\)"):
        relabel(task, states, data.action[:10])
