import numpy as np
import pytest

from fastbfm.data.collect import CollectConfig, collect, room_fractions
from fastbfm.data.dataset import EPISODE_KEYS, episode_files, load_dataset, write_episode
from fastbfm.data.relabel import relabel
from fastbfm.envs import get_task
from fastbfm.errors import FastBFMError
from tests.test_envs import _rollout


def test_collector_writes_exorl_layout(maze_dataset_dir):
    files = episode_files(maze_dataset_dir)
    assert len(files) == 40
    with np.load(files[0], allow_pickle=False) as ep:
        assert set(EPISODE_KEYS) <= set(ep.files)
        assert ep["observation"].shape == (1001, 4)
        assert ep["action"].shape == (1001, 2)
        assert ep["physics"].shape == (1001, 4)
        assert np.all(ep["action"][0] == 0)
    dataset = load_dataset(maze_dataset_dir)
    assert len(dataset) == 40 * 1000
    np.testing.assert_array_equal(dataset.obs[1], dataset.next_obs[0])


def test_collector_leaves_the_start_room(maze_dataset_dir):
    fractions = room_fractions(load_dataset(maze_dataset_dir).next_obs)
    assert sum(fractions.values()) == pytest.approx(1.0)
    assert sum(v > 0.01 for v in fractions.values()) >= 2


def test_collection_resumes_identically(tmp_path):
    config = CollectConfig(episodes=6, num_envs=3, seed=4)
    collect(config, tmp_path / "full", progress=False)
    collect(CollectConfig(episodes=3, num_envs=3, seed=4), tmp_path / "part", progress=False)
    collect(config, tmp_path / "part", progress=False)
    for a, b in zip(episode_files(tmp_path / "full"), episode_files(tmp_path / "part"), strict=True):
        with np.load(a) as x, np.load(b) as y:
            np.testing.assert_array_equal(x["physics"], y["physics"])


@pytest.mark.parametrize("task_name", ["point_mass_maze:reach_top_left", "point_mass_maze:reach_bottom_right"])
def test_relabel_matches_simulated_rewards(task_name):
    states, actions, rewards, _ = _rollout(task_name, seed=11)
    relabelled = relabel(get_task(task_name), states[1:], actions)
    np.testing.assert_allclose(relabelled, rewards, atol=1e-12)


def test_relabel_through_the_dataset_loader(tmp_path):
    states, actions, rewards, obs = _rollout("point_mass_maze:reach_top_left", seed=2, steps=300)
    padded = np.concatenate([np.zeros((1, 2)), actions])
    write_episode(tmp_path, 0, {"observation": obs, "action": padded, "reward": np.zeros((301, 1)), "discount": np.ones((301, 1)), "physics": states})
    dataset = load_dataset(tmp_path)
    out = relabel(get_task("point_mass_maze:reach_top_left"), dataset.next_physics, dataset.action)
    np.testing.assert_allclose(out, rewards, atol=1e-12)


def test_empty_missing_and_corrupt_datasets(tmp_path):
    with pytest.raises(FastBFMError, match="empty dataset"):
        load_dataset(tmp_path)
    with pytest.raises(FastBFMError, match="not found"):
        load_dataset(tmp_path / "nope")
    (tmp_path / "episode_000000_1001.npz").write_bytes(b"not a zip file")
    with pytest.raises(FastBFMError, match="corrupt episode"):
        load_dataset(tmp_path)
