"""Faults and bad input: kill -9 and resume, atomic datasets with manifests, NaN during adaptation, and a
table of bad command lines that must each end in one line `error: ...` and a non-zero exit."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from fastbfm.adapt.lola import LoLA, LoLAConfig, lola_seeds
from fastbfm.adapt.opti import OptiConfig, OptimisticInference, opti_seeds
from fastbfm.adapt.search import LatentSearch, SearchConfig
from fastbfm.adapt.zero_shot import TaskPrompt
from fastbfm.bfm.checkpoint import load_model, save_model
from fastbfm.bfm.fb import FBModel, FBModelConfig
from fastbfm.bfm.train import pretrain
from fastbfm.data import default_collect_config
from fastbfm.data.collect import CollectConfig, collect
from fastbfm.data.dataset import episode_files, load_dataset, write_episode
from fastbfm.data.manifest import MANIFEST
from fastbfm.envs import Task, get_task
from fastbfm.errors import FastBFMError
from tests.cli_helpers import kill_when, one_thread_env, run_cli

REPO = Path(__file__).resolve().parent.parent
# `fastbfm pretrain` with a tiny preset registered first: the real CLI, fast enough to kill mid-run.
TINY_CLI = (
    "import sys; from fastbfm.bfm import fb; "
    "fb.PRESETS['tiny'] = (dict(z_dim=8, hidden_dim=32, backward_hidden_dim=32), fb.FBTrainConfig(batch_size=32)); "
    "from fastbfm.cli import main; sys.argv = ['fastbfm', *sys.argv[1:]]; main()"
)


def _run(cmd):
    done = subprocess.run(cmd, capture_output=True, text=True, env=one_thread_env(), cwd=REPO, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _checkpoint_step(run):
    try:
        return json.loads((run / "trainer.json").read_text())["step"]
    except (OSError, ValueError):
        return 0


def _assert_same_weights(a, b):
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        torch.testing.assert_close(va, vb, rtol=0, atol=0, msg=k)


def _assert_clean_run(run, updates):
    model = load_model(run)  # checksums and shapes verified
    assert model.meta["updates"] == updates
    assert [p.name for p in run.glob("trainer*.safetensors")] == [f"trainer-{updates:09d}.safetensors"]
    assert not list(run.glob("*.tmp"))
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in rows]
    assert steps == sorted(set(steps)) and steps[-1] == updates
    assert all(np.isfinite(v) for r in rows for v in r.values())
    return model


def _pretrain_kill_resume(data, tmp_path, prefix, updates, every, preset):
    args = ["pretrain", "--data", data, "--out", tmp_path / "killed", "--updates", updates, "--checkpoint-every", every, "--threads", 1, "-q", "--preset", preset]
    args = [*prefix, *map(str, args)]
    kill_when(args, lambda: _checkpoint_step(tmp_path / "killed") >= every)
    assert _checkpoint_step(tmp_path / "killed") < updates
    _run(args)
    # the uninterrupted run in this process: what the command calls, with its defaults
    pretrain(data, tmp_path / "straight", preset, 0, updates, every, threads=1, progress=False)
    _assert_same_weights(_assert_clean_run(tmp_path / "killed", updates), _assert_clean_run(tmp_path / "straight", updates))


def test_kill_9_during_pretraining_then_rerun_resumes_exactly(maze_dataset_dir, tmp_path, monkeypatch):
    """SIGKILL right after the first checkpoint; the same command resumes to the same weights, bit for bit."""
    from fastbfm.bfm import fb

    monkeypatch.setitem(fb.PRESETS, "tiny", (dict(z_dim=8, hidden_dim=32, backward_hidden_dim=32), fb.FBTrainConfig(batch_size=32)))
    _pretrain_kill_resume(maze_dataset_dir, tmp_path, [sys.executable, "-c", TINY_CLI], 400, 100, "tiny")


@pytest.mark.slow
def test_kill_9_during_cpu_preset_pretraining(maze_dataset_dir, tmp_path):
    """The same with the real `fastbfm pretrain` and its cpu preset (about 2 min on 2 busy cores)."""
    _pretrain_kill_resume(maze_dataset_dir, tmp_path, [sys.executable, "-m", "fastbfm"], 300, 100, "cpu")


def _arrays(folder):
    out = []
    for path in episode_files(folder):
        with np.load(path, allow_pickle=False) as ep:
            out.append((path.name, {k: ep[k] for k in ep.files}))
    return out


def _assert_same_dataset(a, b):
    ea, eb = _arrays(a), _arrays(b)
    assert [n for n, _ in ea] == [n for n, _ in eb]
    for (name, x), (_, y) in zip(ea, eb):
        assert x.keys() == y.keys()
        for k in x:
            np.testing.assert_array_equal(x[k], y[k], err_msg=f"{name}:{k}")


def test_kill_9_during_collection_then_rerun_gives_the_same_dataset(tmp_path):
    out = tmp_path / "killed"
    args = [sys.executable, "-m", "fastbfm", "collect", "--domain", "point_mass_maze", "--episodes", "24", "--num-envs", "2", "--out", str(out), "-q"]
    kill_when(args, lambda: len(list(out.glob("*.npz"))) >= 2)
    assert json.loads((out / MANIFEST).read_text())["complete"] is False
    with pytest.raises(FastBFMError, match="incomplete dataset"):
        load_dataset(out)
    _run(args)
    collect(default_collect_config("point_mass_maze", episodes=24, num_envs=2, seed=0), tmp_path / "straight", progress=False)
    _assert_same_dataset(out, tmp_path / "straight")
    assert len(load_dataset(out, verify=True)) == 24_000
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_collection_cut_mid_round_is_redrawn_identically(tmp_path):
    """A kill inside a round leaves some of its episodes and maybe a temporary file: both are redone."""
    config = CollectConfig(episodes=6, num_envs=3, seed=4)
    collect(config, tmp_path / "full", progress=False)
    collect(CollectConfig(episodes=5, num_envs=3, seed=4), tmp_path / "cut", progress=False)
    manifest = json.loads((tmp_path / "cut" / MANIFEST).read_text())
    (tmp_path / "cut" / MANIFEST).write_text(json.dumps({**manifest, "complete": False}))
    (tmp_path / "cut" / ".episode-x.tmp").write_bytes(b"half a file")
    episode_files(tmp_path / "cut")[-1].unlink()  # episodes 0-3 remain: one round and a piece of the next
    collect(config, tmp_path / "cut", progress=False)
    _assert_same_dataset(tmp_path / "full", tmp_path / "cut")
    assert not list((tmp_path / "cut").glob("*.tmp"))
    assert json.loads((tmp_path / "cut" / MANIFEST).read_text())["episodes"] == 6


def test_collection_refuses_to_mix_recipes(tmp_path):
    collect(CollectConfig(episodes=3, num_envs=3, seed=4), tmp_path, progress=False)
    with pytest.raises(FastBFMError, match="another recipe.*seed 4 -> 5"):
        collect(CollectConfig(episodes=6, num_envs=3, seed=5), tmp_path, progress=False)


def test_manifest_checks(tmp_path, monkeypatch):
    collect(CollectConfig(episodes=3, num_envs=3, seed=1), tmp_path / "d", progress=False)
    folder = tmp_path / "d"
    assert len(load_dataset(folder, verify=True)) == 3000
    # a flipped byte fails the zip's own CRC; a whole valid episode in the wrong place needs the checksum
    path = episode_files(folder)[1]
    path.write_bytes(episode_files(folder)[0].read_bytes())
    load_dataset(folder)
    with pytest.raises(FastBFMError, match="checksum"):
        load_dataset(folder, verify=True)
    monkeypatch.setenv("FASTBFM_VERIFY_DATA", "1")
    with pytest.raises(FastBFMError, match="checksum"):
        load_dataset(folder)
    monkeypatch.delenv("FASTBFM_VERIFY_DATA")
    path.unlink()
    with pytest.raises(FastBFMError, match="missing"):
        load_dataset(folder)
    (tmp_path / "d" / "manifest.json").write_text("{}")
    with pytest.raises(FastBFMError, match="format_version"):
        load_dataset(folder)


def test_folder_without_manifest_still_loads_and_is_shape_checked(tmp_path):
    """ExORL folders have no manifest: they load; episodes that disagree in shape are refused."""
    rng = np.random.default_rng(0)

    def episode(obs_dim):
        return {"observation": rng.standard_normal((11, obs_dim)).astype(np.float32), "action": np.zeros((11, 2), np.float32),
                "reward": np.zeros((11, 1)), "discount": np.ones((11, 1)), "physics": rng.standard_normal((11, 4))}

    buffer = tmp_path / "walker" / "rnd" / "buffer"
    write_episode(buffer, 0, episode(4))
    write_episode(buffer, 1, episode(4))
    assert len(load_dataset(tmp_path / "walker" / "rnd")) == 20
    write_episode(buffer, 2, episode(5))
    with pytest.raises(FastBFMError, match="'observation' is float32 with 5 columns"):
        load_dataset(tmp_path / "walker" / "rnd")


# -- NaN and infinity during adaptation --------------------------------------------------------------


def _tiny_model():
    torch.manual_seed(0)
    model = FBModel(FBModelConfig(obs_dim=4, action_dim=2, z_dim=6, hidden_dim=16, backward_hidden_dim=16))
    model.discount = 0.99  # an untrained model has none; LoLA bootstraps with it
    return model


def _nan_task():
    return Task("point_mass_maze", "nan_reward", reward=lambda fields: np.full(len(fields.qpos), np.nan))


def _prompt(model):
    w = torch.ones(6)
    return TaskPrompt(z=model.project(w), w=w, num_samples=1, num_rewarded=1)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda m: LoLA(m, _prompt(m), LoLAConfig(horizon=100), 0, 1000), "non-finite scores"),
        (lambda m: LatentSearch(m, _prompt(m), SearchConfig(population=2), 0, 1000), "non-finite returns"),
        (lambda m: LatentSearch(m, _prompt(m), SearchConfig(method="cem", population=2), 0, 1000), "non-finite returns"),
        (lambda m: OptimisticInference(m, None, OptiConfig(), 0, 1000), "non-finite rewards"),
    ],
    ids=["lola", "cmaes", "cem", "opti"],
)
def test_non_finite_rewards_stop_an_adapter(make, message):
    """Each method refuses to learn from NaN rewards, with or without the simulation driver."""
    model = _tiny_model()
    adapter = make(model)
    H, n = adapter.next_horizon(), adapter.rollouts
    obs = np.zeros((H, n, 4), np.float32)
    adapter.propose(obs[0])
    adapter.observe(obs, np.zeros((H, n, 2), np.float32), np.full((H, n), np.nan), obs)
    with pytest.raises(FastBFMError, match=message):
        adapter.update()


@pytest.mark.parametrize(
    "run, label",
    [
        (lambda m: lola_seeds(m, _nan_task(), _prompt(m), LoLAConfig(episodes=1, horizon=100, eval_episodes=1, safe=None), [0]), "LoLA"),
        (lambda m: opti_seeds(m, _nan_task(), None, OptiConfig(episodes=1, eval_episodes=1), [0]), "OpTI"),
    ],
    ids=["lola", "opti"],
)
def test_a_non_finite_task_stops_adaptation(run, label):
    with pytest.raises(FastBFMError, match=f"{label} on point_mass_maze:nan_reward: non-finite evaluation returns"):
        run(_tiny_model())


def test_a_diverged_policy_stops_adaptation():
    """NaN weights give NaN actions, which MuJoCo would silently replace by zeros."""
    model = _tiny_model()
    with torch.no_grad():
        model.actor.parameters().__next__().fill_(float("nan"))
    task = get_task("point_mass_maze:reach_top_left")
    with pytest.raises(FastBFMError, match="non-finite actions"):
        lola_seeds(model, task, _prompt(model), LoLAConfig(episodes=1, horizon=100, eval_episodes=1, safe=None), [0])
    with pytest.raises(FastBFMError, match="non-finite actions"):
        opti_seeds(model, task, None, OptiConfig(episodes=1, eval_episodes=1), [0])


# -- bad input through the command line ----------------------------------------------------------------


BAD_REWARDS = '''
import math
def raises(physics):
    return 1 / 0
def text(physics):
    return "high"
def nan(physics):
    return math.nan
not_a_function = 3
'''


def _bad_files(tmp_path, maze_dataset_dir):
    """Folders of bad data and checkpoints, each next to a good one's files."""
    good = episode_files(maze_dataset_dir)[0]
    made = {}
    for name in ("text_npz", "pickle_npz", "npy_npz", "foreign_npz", "truncated_npz", "bad_dims"):
        made[name] = tmp_path / name
        made[name].mkdir()
        (made[name] / good.name).write_bytes(good.read_bytes())
    (made["text_npz"] / "episode_000001_1001.npz").write_text("observation,action\n1,2\n")
    obj = np.empty(3, dtype=object)
    obj[:] = [{"a": 1}, None, "x"]
    np.savez(made["pickle_npz"] / "episode_000001_3.npz", observation=obj, action=obj, physics=obj)
    np.save(made["npy_npz"] / "episode_000001_3.npy", np.zeros((3, 4)))
    (made["npy_npz"] / "episode_000001_3.npy").rename(made["npy_npz"] / "episode_000001_3.npz")
    np.savez(made["foreign_npz"] / "episode_000001_3.npz", x=np.zeros(3))
    (made["truncated_npz"] / "episode_000001_1001.npz").write_bytes(good.read_bytes()[:5000])
    np.savez(made["bad_dims"] / "episode_000001_3.npz", observation=np.zeros((3, 7), np.float32), action=np.zeros((3, 2), np.float32), physics=np.zeros((3, 4)))
    made["incomplete"] = tmp_path / "incomplete"
    collect(CollectConfig(episodes=2, num_envs=2, seed=0), made["incomplete"], progress=False)
    manifest = json.loads((made["incomplete"] / MANIFEST).read_text())
    (made["incomplete"] / MANIFEST).write_text(json.dumps({**manifest, "complete": False}))

    made["truncated_ckpt"] = tmp_path / "truncated_ckpt"
    save_model(FBModel(FBModelConfig(obs_dim=4, action_dim=2, z_dim=8, hidden_dim=16, backward_hidden_dim=16)), made["truncated_ckpt"])
    weights = made["truncated_ckpt"] / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-50])
    made["text_ckpt"] = tmp_path / "text_ckpt"
    save_model(FBModel(FBModelConfig(obs_dim=4, action_dim=2, z_dim=8, hidden_dim=16, backward_hidden_dim=16)), made["text_ckpt"])
    config = json.loads((made["text_ckpt"] / "config.json").read_text())
    (made["text_ckpt"] / "model.safetensors").write_text("not weights")
    config["sha256"] = {}
    (made["text_ckpt"] / "config.json").write_text(json.dumps(config))
    made["list_ckpt"] = tmp_path / "list_ckpt"
    made["list_ckpt"].mkdir()
    (made["list_ckpt"] / "config.json").write_text("[1, 2]")
    made["a_file"] = tmp_path / "a_file"
    made["a_file"].write_text("x")
    return made


def test_bad_input_table(tmp_path, maze_dataset_dir, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad_rewards.py").write_text(BAD_REWARDS)
    (tmp_path / "syntax_rewards.py").write_text("def f(physics)\n    return 1\n")
    (tmp_path / "import_rewards.py").write_text("raise RuntimeError('no GPU here')\n")
    f = _bad_files(tmp_path, maze_dataset_dir)
    maze, data = "point_mass_maze:reach_top_left", maze_dataset_dir
    ev = ["eval", "--model", "maze-fb", "--data", data, "--samples", 50, "--episodes", 1]
    pre = ["pretrain", "--out", tmp_path / "run", "--updates", 1]
    cases = [
        # unknown names
        (["collect", "--domain", "nope", "--out", tmp_path / "d"], ["unknown domain", "nope"]),
        ([*ev, "--task", "walker3:run"], ["unknown domain", "walker3"]),
        ([*ev, "--task", "point_mass_maze:reach_middle"], ["unknown task", "reach_middle"]),
        ([*ev, "--task", "reach_top_left"], ["domain:task"]),
        (["eval", "--model", "no-such-model", "--task", maze], ["unknown model", "no-such-model"]),
        (["adapt", "--model", "maze-fb", "--task", maze, "--method", "magic"], ["unknown method", "magic"]),
        ([*pre, "--data", data, "--preset", "huge"], ["unknown preset", "huge"]),
        (["nosuchcommand"], ["No such command"]),
        (["eval", "--model", "maze-fb", "--task", maze, "--bogus"], ["No such option", "--bogus"]),
        # out-of-range values
        (["collect", "--out", tmp_path / "d", "--episodes", 0], ["--episodes"]),
        (["collect", "--out", tmp_path / "d", "--num-envs", -3], ["--num-envs"]),
        ([*ev, "--task", maze, "--episodes", 0], ["--episodes"]),
        (["adapt", "--model", "maze-fb", "--task", maze, "--seeds", 0], ["--seeds"]),
        (["adapt", "--model", "maze-fb", "--task", maze, "--data", data, "--sigma", -1], ["sigma > 0"]),
        ([*pre, "--data", data, "--discount", 1.5], ["--discount"]),
        ([*pre, "--data", data, "--updates", "many"], ["--updates"]),
        ([*ev, "--task", maze, "--goal", "1,2"], ["goal", "size 4"]),
        ([*ev, "--task", maze, "--goal", "up,left"], ["--goal"]),
        # malformed reward modules
        ([*ev, "--task", "point_mass_maze:no_such_module:f"], ["cannot import the reward module"]),
        ([*ev, "--task", "point_mass_maze:syntax_rewards:f"], ["syntax_rewards", "SyntaxError"]),
        ([*ev, "--task", "point_mass_maze:import_rewards:f"], ["import_rewards", "no GPU here"]),
        ([*ev, "--task", "point_mass_maze:bad_rewards:missing"], ["no attribute", "missing"]),
        ([*ev, "--task", "point_mass_maze:bad_rewards:not_a_function"], ["neither a Task nor a function"]),
        ([*ev, "--task", "point_mass_maze:bad_rewards:raises"], ["bad_rewards:raises failed", "ZeroDivisionError"]),
        ([*ev, "--task", "point_mass_maze:bad_rewards:text"], ["bad_rewards:text returned 'high'", "a str"]),
        ([*ev, "--task", "point_mass_maze:bad_rewards:nan"], ["bad_rewards:nan returned nan"]),
        # truncated and foreign files
        (["eval", "--model", f["truncated_ckpt"], "--task", maze], ["corrupt checkpoint"]),
        (["eval", "--model", f["text_ckpt"], "--task", maze], ["records no checksum", "fastbfm sign"]),
        (["eval", "--model", f["list_ckpt"], "--task", maze], ["unsupported checkpoint config"]),
        ([*pre, "--data", f["text_npz"]], ["corrupt episode", "episode_000001_1001.npz", "not an .npz archive"]),
        ([*pre, "--data", f["pickle_npz"]], ["corrupt episode", "allow_pickle=False"]),
        ([*pre, "--data", f["npy_npz"]], ["corrupt episode", "not an .npz archive"]),
        ([*pre, "--data", f["foreign_npz"]], ["corrupt episode", "missing arrays"]),
        ([*pre, "--data", f["truncated_npz"]], ["corrupt episode"]),
        ([*pre, "--data", f["bad_dims"]], ["corrupt episode", "7 columns"]),
        ([*pre, "--data", f["incomplete"]], ["incomplete dataset", "fastbfm collect"]),
        ([*pre, "--data", tmp_path / "nowhere"], ["not found"]),
        ([*ev, "--task", maze, "--data", f["a_file"]], ["not found"]),
        (["pretrain", "--data", data, "--out", f["a_file"], "--updates", 1], ["a_file"]),
        (["collect", "--out", f["a_file"], "--episodes", 1], ["a_file"]),
    ]
    failures = []
    for args, words in cases:
        code, stderr = run_cli(args, monkeypatch, capsys)
        lines = stderr.strip().splitlines()
        ok = code not in (0, None) and len(lines) == 1 and lines[0].startswith("error: ") and all(w in lines[0] for w in words)
        if not ok:
            failures.append(f"{' '.join(map(str, args))}\n  exit {code}: {stderr.strip()[-600:]}")
    assert not failures, "\n".join(failures)


def test_a_checkpoint_without_its_checksum_is_refused_until_signed(tmp_path, monkeypatch, capsys):
    from safetensors.torch import load_file, save_file

    from tests.cli_helpers import assert_one_line_error

    folder = save_model(FBModel(FBModelConfig(obs_dim=4, action_dim=2, z_dim=8, hidden_dim=16, backward_hidden_dim=16)), tmp_path / "ckpt")
    config = json.loads((folder / "config.json").read_text())
    del config["sha256"]
    (folder / "config.json").write_text(json.dumps(config))
    weights = load_file(folder / "model.safetensors")
    weights["backward_map.0.bias"] = weights["backward_map.0.bias"] + 1  # modified weights
    save_file(weights, folder / "model.safetensors")
    with pytest.raises(FastBFMError, match=r"records no checksum of model.safetensors.*fastbfm sign"):
        load_model(folder)
    code, err = run_cli(["eval", "--model", folder, "--task", "point_mass_maze:reach_top_left"], monkeypatch, capsys)
    assert_one_line_error(code, err, "records no checksum", "fastbfm sign")
    code, err = run_cli(["sign", folder], monkeypatch, capsys)
    assert code == 0, err
    assert "model.safetensors" in json.loads((folder / "config.json").read_text())["sha256"]
    torch.testing.assert_close(load_model(folder).state_dict()["backward_map.0.bias"], weights["backward_map.0.bias"])
    weights["backward_map.0.bias"] += 1  # changed after signing: refused again
    save_file(weights, folder / "model.safetensors")
    with pytest.raises(FastBFMError, match="checksum"):
        load_model(folder)
    code, err = run_cli(["sign", tmp_path / "nowhere"], monkeypatch, capsys)
    assert_one_line_error(code, err, "checkpoint not found")
    assert not (tmp_path / "nowhere").exists()
    (folder / "model.safetensors").write_bytes(b"not weights")  # only weights that load can be signed
    code, err = run_cli(["sign", folder], monkeypatch, capsys)
    assert_one_line_error(code, err, "model.safetensors")
