"""The RND explorer: its intrinsic reward, its collection (resumable bit for bit), its command line."""

import importlib
import json
import shutil

import numpy as np
import pytest
import torch

from fastbfm.data.collect import CollectConfig, collect
from fastbfm.data.dataset import episode_files, load_dataset
from fastbfm.data.rnd import RND, RNDConfig, Replay
from fastbfm.errors import FastBFMError

collect_module = importlib.import_module("fastbfm.data.collect")  # the module, not the function fastbfm.data exports

TINY = RNDConfig(hidden=32, rnd_hidden=32, rnd_dim=16, batch_size=32, random_transitions=100, transitions_per_update=4)


def test_the_intrinsic_reward_falls_on_states_seen_often_and_stays_high_on_new_ones():
    torch.manual_seed(0)
    rnd = RND(4, RNDConfig(rnd_hidden=64, rnd_dim=32, lr=1e-3))
    g = torch.Generator().manual_seed(0)
    familiar = lambda n: 0.1 * torch.randn(n, 4, generator=g)  # noqa: E731
    novel = 0.1 * torch.randn(256, 4, generator=g) + torch.tensor([1.0, -1.0, 0.5, 0.0])
    rnd.obs_stats.update(familiar(256))
    before = rnd.reward(familiar(256), update_stats=True).mean()
    for _ in range(400):
        rnd.update(familiar(128))
    after_familiar = rnd.reward(familiar(256)).mean()
    after_novel = rnd.reward(novel).mean()
    assert after_familiar < 0.2 * before  # learnt: seen often, little reward
    assert after_novel > 5 * after_familiar  # never seen: still rewarded


def test_replay_samples_transitions_with_their_n_step_landing_states():
    replay = Replay()
    T = 5
    obs = np.arange(2 * (T + 1), dtype=np.float32).reshape(2, T + 1, 1)  # value = segment * 6 + t
    replay.add(obs, obs + 100)
    o, a, landing, k = replay.sample(500, 3, np.random.default_rng(0))
    t = o[:, 0] % (T + 1)
    assert set(np.unique(t)) == set(range(T))  # every step but the last as a start
    np.testing.assert_array_equal(k, np.minimum(3, T - t))  # cut at the segment's end
    np.testing.assert_array_equal(landing[:, 0], o[:, 0] + k)
    np.testing.assert_array_equal(a[:, 0], o[:, 0] + 101)  # the action taken from o (row t + 1 of the layout)
    split = Replay()  # the same transitions added in two parts sample identically
    split.add(obs[:1], obs[:1] + 100)
    split.add(obs[1:], obs[1:] + 100)
    for x, y in zip(split.sample(500, 3, np.random.default_rng(0)), (o, a, landing, k)):
        np.testing.assert_array_equal(x, y)


def _config(episodes=12):
    return CollectConfig(domain="point_mass_maze", episodes=episodes, num_envs=4, segment_length=50, explorer="rnd", rnd=TINY)


def test_an_interrupted_rnd_collection_resumes_to_the_same_dataset(tmp_path, monkeypatch):
    collect(_config(), tmp_path / "straight", progress=False)
    real_write = collect_module.write_episode
    written = []

    def write_then_die(folder, index, episode):
        if len(written) == 6:  # halfway through the second round
            raise KeyboardInterrupt
        written.append(index)
        return real_write(folder, index, episode)

    monkeypatch.setattr(collect_module, "write_episode", write_then_die)
    with pytest.raises(KeyboardInterrupt):
        collect(_config(), tmp_path / "cut", progress=False)
    monkeypatch.setattr(collect_module, "write_episode", real_write)
    collect(_config(), tmp_path / "cut", progress=False)
    a, b = episode_files(tmp_path / "straight"), episode_files(tmp_path / "cut")
    assert [p.name for p in a] == [p.name for p in b] and len(a) == 12
    assert all(x.read_bytes() == y.read_bytes() for x, y in zip(a, b))
    manifest = json.loads((tmp_path / "cut" / "manifest.json").read_text())
    assert manifest["config"]["explorer"] == "rnd" and manifest["config"]["rnd"]["hidden"] == 32
    data = load_dataset(tmp_path / "cut")
    assert len(data) == 12 * 50 and np.isfinite(data.obs).all()


def test_rnd_collections_refuse_other_settings_and_a_missing_state(tmp_path):
    collect(_config(8), tmp_path / "d", progress=False)
    with pytest.raises(FastBFMError, match="another recipe"):
        collect(CollectConfig(domain="point_mass_maze", episodes=8, num_envs=4, segment_length=50, explorer="rnd"), tmp_path / "d", progress=False)
    for state in (tmp_path / "d").glob("explorer-*"):
        state.unlink()
    with pytest.raises(FastBFMError, match="not the explorer's state"):
        collect(_config(12), tmp_path / "d", progress=False)
    with pytest.raises(FastBFMError, match="unknown explorer"):
        CollectConfig(explorer="curiosity")
    with pytest.raises(FastBFMError, match="only to the rnd explorer"):
        CollectConfig(rnd=TINY)


def test_the_command_line_collects_with_rnd(tmp_path, monkeypatch, capsys):
    from tests.cli_helpers import run_cli

    code, err = run_cli(["collect", "--domain", "point_mass_maze", "--explorer", "rnd", "--episodes", 4, "--segment-length", 50, "--num-envs", 4,
                         "--out", tmp_path / "d", "-q", "--json"], monkeypatch, capsys)  # fmt: skip
    assert code == 0, err
    assert json.loads((tmp_path / "d" / "manifest.json").read_text())["config"]["rnd"] == json.loads(json.dumps(RNDConfig().__dict__))
    code, err = run_cli(["collect", "--explorer", "magic", "--out", tmp_path / "e"], monkeypatch, capsys)
    assert code == 1 and "unknown explorer" in err
    shutil.rmtree(tmp_path / "e", ignore_errors=True)


@pytest.mark.parametrize("edit", ["garbage", "no checksum", "tensors", "stray"])
def test_a_damaged_explorer_state_is_one_line(tmp_path, edit):
    collect(_config(8), tmp_path / "d", progress=False)
    state = tmp_path / "d" / "explorer-000002.json"
    if edit == "garbage":
        state.write_text("{not json")
    elif edit == "no checksum":
        meta = json.loads(state.read_text())
        del meta["sha256"]
        state.write_text(json.dumps(meta))
    elif edit == "tensors":
        state.with_suffix(".safetensors").write_bytes(b"0" * 64)
    else:  # a stray file beside the states is left alone, not parsed as a round
        (tmp_path / "d" / "explorer-old.json").write_text("{}")
        collect(_config(12), tmp_path / "d", progress=False)
        assert (tmp_path / "d" / "explorer-old.json").exists() and len(episode_files(tmp_path / "d")) == 12
        return
    with pytest.raises(FastBFMError):
        collect(_config(12), tmp_path / "d", progress=False)
