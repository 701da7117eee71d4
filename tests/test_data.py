import numpy as np
import pytest

from fastbfm.data.collect import CollectConfig, collect
from fastbfm.data.dataset import EPISODE_KEYS, episode_files, load_dataset, write_episode
from fastbfm.data.relabel import relabel
from fastbfm.envs import get_domain, get_task, make_env
from fastbfm.envs.point_mass_maze import room_fractions
from fastbfm.errors import FastBFMError
from tests.test_envs import _rollout


def _maze_rollout(task_name, seed, steps=None):
    return _rollout(make_env(task_name, seed=seed), 2, seed, steps)


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
    states, actions, rewards, _ = _maze_rollout(task_name, seed=11)
    relabelled = relabel(get_task(task_name), states[1:], actions)
    np.testing.assert_allclose(relabelled, rewards, atol=1e-12)


def test_relabel_through_the_dataset_loader(tmp_path):
    states, actions, rewards, obs = _maze_rollout("point_mass_maze:reach_top_left", seed=2, steps=300)
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


@pytest.mark.parametrize("domain_name, state_dim", [("walker", 18), ("cheetah", 18), ("quadruped", 57)])
def test_locomotion_collection_layout(tmp_path, domain_name, state_dim):
    collect(CollectConfig(domain=domain_name, episodes=4, num_envs=2, segment_length=50, seed=1), tmp_path, progress=False)
    dataset = load_dataset(tmp_path)
    domain = get_domain(domain_name)
    assert len(dataset) == 4 * 50 and dataset.obs_dim == domain.observation_dim
    assert dataset.next_physics.shape == (200, state_dim)
    np.testing.assert_array_equal(dataset.obs[1], dataset.next_obs[0])


def test_exorl_folder_loads_and_resimulates(tmp_path):
    """A real ExORL layout (<domain>/<algo>/buffer) whose observations were recorded by another MuJoCo:
    re-simulation recomputes s and s' from the stored physics and actions on the installed one."""
    source = tmp_path / "source"
    collect(CollectConfig(domain="walker", episodes=2, num_envs=2, segment_length=40, seed=2), source, progress=False)
    buffer = tmp_path / "exorl" / "walker" / "rnd" / "buffer"
    for i, path in enumerate(episode_files(source)):
        with np.load(path) as ep:
            episode = {k: ep[k] for k in ep.files}
        episode["observation"] = episode["observation"] + 1e-3  # the drift of an older simulator
        write_episode(buffer, i, episode)
    exact = load_dataset(source)
    drifted = load_dataset(tmp_path / "exorl" / "walker" / "rnd")
    assert np.abs(drifted.next_obs - exact.next_obs).max() > 5e-4
    resimulated = load_dataset(tmp_path / "exorl" / "walker" / "rnd", resimulate=True)
    np.testing.assert_array_equal(resimulated.obs, exact.obs)
    # A stored state holds no contact-solver warm start, so a step from it may differ in the last digits.
    np.testing.assert_allclose(resimulated.next_obs, exact.next_obs, atol=1e-4, rtol=0)
    np.testing.assert_allclose(resimulated.next_physics, exact.next_physics, atol=1e-4, rtol=0)
    assert np.abs(resimulated.next_obs - exact.next_obs).mean() < 1e-6


def test_default_maze_recipe_reproduces_the_shipped_models_data(tmp_path):
    """maze-fb was trained on `fastbfm collect --domain point_mass_maze` (seed 0): the recipe must keep
    drawing the same episodes, or the model's card and zero-shot prompts stop being reproducible."""
    import hashlib
    from dataclasses import replace

    from fastbfm.data import default_collect_config

    collect(replace(default_collect_config("point_mass_maze"), episodes=2), tmp_path, progress=False)
    with np.load(episode_files(tmp_path)[1]) as ep:
        digest = hashlib.sha256(ep["physics"].tobytes()).hexdigest()
    assert digest == "8335c69dd1092c098c4374a37d265f0d3104246ca88bb936f9b965931d6d6345"


def test_the_default_dataset_is_collected_only_where_said(tmp_path, monkeypatch, capsys):
    """Loading the default dataset never collects; ensuring it says what it collects before it starts."""
    import fastbfm.data as data

    monkeypatch.chdir(tmp_path)
    with pytest.raises(FastBFMError, match="no complete dataset at data/point_mass_maze/explore: collect it with `fastbfm collect"):
        data.load_default_dataset("point_mass_maze")
    small = data.default_collect_config("point_mass_maze", episodes=4, num_envs=2)
    monkeypatch.setattr(data, "default_collect_config", lambda domain: small)
    dataset = data.ensure_dataset("point_mass_maze", progress=False)
    err = capsys.readouterr().err
    assert "collecting data/point_mass_maze/explore: 4,000 transitions of point_mass_maze" in err and len(dataset) == 4000
    data.ensure_dataset("point_mass_maze", progress=False)  # there now: loaded, nothing said
    assert capsys.readouterr().err == "" and len(data.load_default_dataset("point_mass_maze")) == 4000


def test_each_domain_owns_its_recipe_camera_and_card_extras():
    from fastbfm.data import default_collect_config
    from fastbfm.envs import get_domain, list_domains

    assert list_domains() == ["cheetah", "point_mass_maze", "quadruped", "walker"]  # found by module, no list to edit
    walker = default_collect_config("walker")
    assert (walker.episodes, walker.segment_length, walker.posture_prob) == (40_000, 25, 0.5)
    assert default_collect_config("quadruped").posture_prob == 0.0 and default_collect_config("point_mass_maze").draw_all_resets
    assert {d: get_domain(d).camera for d in list_domains()} == {"cheetah": "side", "point_mass_maze": "fixed", "quadruped": "y", "walker": "side"}
    assert [d for d in list_domains() if get_domain(d).partition is not None] == ["point_mass_maze", "quadruped"]
    assert get_domain("point_mass_maze").partition.shares(np.array([[-0.1, 0.1, 0, 0], [0.1, -0.1, 0, 0]]))["bottom_right"] == 0.5


def test_quadruped_righting_counts_episodes_that_start_upside_down_and_reach_upright():
    from fastbfm.envs.quadruped import UPRIGHT_OBS, orientation_fractions, righted_fraction

    zz = np.array([[-1.0, -0.8, 0.2, 0.95], [-0.9, -0.9, -0.9, -0.9], [0.95, 0.99, 0.95, 0.9], [-0.6, 0.0, 0.92, 1.0]])
    obs = np.zeros((zz.size, 78))
    next_obs = np.zeros((zz.size, 78))
    obs[:, UPRIGHT_OBS] = zz.ravel()
    next_obs[:, UPRIGHT_OBS] = np.concatenate([np.append(row[1:], row[-1]) for row in zz])
    down, share = righted_fraction(obs, next_obs, np.arange(0, zz.size, 4))
    assert (down, share) == (3, 2 / 3)  # the upright-starting episode is not counted
    shares = orientation_fractions(obs)
    assert sum(shares.values()) == pytest.approx(1.0)
    assert shares["upright (zz > 0.9)"] == pytest.approx(6 / 16)


def test_quadruped_dataset_card_reports_orientation_and_righting(tmp_path):
    from fastbfm.data.card import write_dataset_card

    collect(CollectConfig(domain="quadruped", episodes=4, num_envs=2, segment_length=20, seed=1), tmp_path, progress=False)
    stats = write_dataset_card(tmp_path, load_dataset(tmp_path), "quadruped")
    assert sum(stats["torso orientation_fractions"].values()) == pytest.approx(1.0)
    card = (tmp_path / "DATASET_CARD.md").read_text()
    assert "States per torso orientation: upright (zz > 0.9)" in card
    assert "stored episodes that start upside down" in card
