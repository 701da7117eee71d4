"""Issue 19's failure classes, one regression test each: files read back checked against their schemas
(configs, trainer states, manifests, grid cells and budgets, results, episodes), bounded integer options
and non-negative seeds, methods that cannot spend their budget, a collection rerun with fewer episodes,
NaN in stored physics, and two processes writing one folder. The fuzz suite (test_fuzz.py) drives the
same classes with generated corruptions."""

import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from fastbfm.adapt.lola import LoLAConfig, lola_seeds
from fastbfm.adapt.search import SearchConfig, search_seeds
from fastbfm.adapt.zero_shot import TaskPrompt
from fastbfm.bfm.checkpoint import save_model
from fastbfm.bfm.fb import FBModel, FBModelConfig
from fastbfm.bfm.train import pretrain
from fastbfm.data import default_collect_config
from fastbfm.data.collect import CollectConfig, collect
from fastbfm.data.dataset import episode_files, load_dataset
from fastbfm.data.manifest import MANIFEST
from fastbfm.envs import get_task
from fastbfm.errors import FastBFMError
from fastbfm.rollout import eval_start_states
from tests.cli_helpers import assert_one_line_error, cell_path, run_cli, write_grid_with_cell

REPO = Path(__file__).resolve().parent.parent
MAZE = "point_mass_maze:reach_top_left"


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory):
    folder = tmp_path_factory.mktemp("small") / "data"
    collect(CollectConfig(episodes=3, num_envs=3, seed=2), folder, progress=False)
    return folder


def _copy(folder, to):
    shutil.copytree(folder, to)
    return to


def _tiny_checkpoint(folder):
    torch.manual_seed(0)
    return save_model(FBModel(FBModelConfig(obs_dim=4, action_dim=2, z_dim=8, hidden_dim=16, backward_hidden_dim=16)), folder)


def _edit_json(path, edit):
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


# -- model configs: sizes bounded, types checked ----------------------------------------------------


@pytest.mark.parametrize(
    "edit, words",
    [
        (lambda c: c["model"].update(hidden_dim=10**7), ["model.hidden_dim", "less than or equal"]),
        (lambda c: c["model"].update(z_dim=-5), ["model.z_dim", "greater than or equal"]),
        (lambda c: c["model"].update(obs_dim="4"), ["model.obs_dim", "valid integer"]),
        (lambda c: c["model"].update(ensemble_size=2.5), ["model.ensemble_size"]),
        (lambda c: c.update(sha256=["x"]), ["sha256", "dictionary"]),
        (lambda c: c.update(meta=[]), ["meta"]),
        (lambda c: c.update(model=None), ["model"]),
    ],
    ids=["huge", "negative", "text", "float", "sha-list", "meta-list", "model-null"],
)
def test_a_bad_model_config_is_one_line_naming_the_field(tmp_path, monkeypatch, capsys, edit, words):
    """Before: a hidden width of 10^7 asked torch for terabytes (RuntimeError traceback); text or lists
    gave TypeError / AttributeError tracebacks."""
    ckpt = _tiny_checkpoint(tmp_path / "ckpt")
    _edit_json(ckpt / "config.json", edit)
    code, err = run_cli(["eval", "--model", ckpt, "--task", MAZE, "--goal", "0,0,0,0", "--episodes", 1], monkeypatch, capsys)
    assert_one_line_error(code, err, "config.json", *words)


def test_a_huge_meta_motivo_width_is_refused_before_building(tmp_path, monkeypatch, capsys):
    """Before: only a lower bound; a width of 10^6 built networks of 10^12 weights (RuntimeError traceback)."""
    from tests.metamotivo_fixture import write_random_checkpoint

    folder = write_random_checkpoint(tmp_path / "mm", obs_dim=4, action_dim=2, z_dim=8)
    _edit_json(folder / "config.json", lambda c: c["archi"]["f"].update(hidden_dim=10**6))
    code, err = run_cli(["eval", "--model", folder, "--task", MAZE, "--goal", "0,0,0,0", "--episodes", 1], monkeypatch, capsys)
    assert_one_line_error(code, err, "archi.f.hidden_dim must be an integer from 2 to 8192")


# -- trainer state ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained_run(small_dataset, tmp_path_factory):
    from fastbfm.bfm import fb

    fb.PRESETS.setdefault("tiny", (dict(z_dim=8, hidden_dim=32, backward_hidden_dim=32), fb.FBTrainConfig(batch_size=32)))
    run = tmp_path_factory.mktemp("run") / "run"
    pretrain(small_dataset, run, "tiny", 0, 4, 2, threads=1, progress=False)
    return run


@pytest.mark.parametrize(
    "edit, words",
    [
        (lambda s: s.update(step="4"), ["trainer.json", "field step"]),
        (lambda s: s.update(weights="../../model.safetensors"), ["trainer.json", "field weights"]),
        (lambda s: s.update(sha256=[]), ["trainer.json", "field sha256"]),
        (lambda s: s.update(optimizers={"f": {"param_groups": "x"}}), ["trainer.json", "optimizers.f.param_groups"]),
        (lambda s: s.update(wall_time_s=float("nan")), ["trainer.json", "field wall_time_s"]),
        (lambda s: s.pop("optimizers"), ["trainer.json", "optimizers"]),
    ],
    ids=["step-text", "weights-path", "sha-list", "groups-text", "nan-time", "no-optimizers"],
)
def test_a_bad_trainer_state_is_one_line_naming_the_field(trained_run, small_dataset, tmp_path, monkeypatch, capsys, edit, words):
    """Before: KeyError / TypeError / AttributeError tracebacks on resume."""
    from fastbfm.bfm import fb

    monkeypatch.setitem(fb.PRESETS, "tiny", fb.PRESETS["tiny"])
    run = _copy(trained_run, tmp_path / "run")
    _edit_json(run / "trainer.json", edit)
    code, err = run_cli(["pretrain", "--data", small_dataset, "--out", run, "--preset", "tiny", "--updates", 6,
                         "--checkpoint-every", 2, "--threads", 1, "-q"], monkeypatch, capsys)
    assert_one_line_error(code, err, *words)


# -- dataset manifests and episode files ------------------------------------------------------------


@pytest.mark.parametrize(
    "edit, words",
    [
        (lambda m: m.update(episodes="3"), ["field episodes"]),
        (lambda m: m.update(files=[1, 2]), ["field files"]),
        (lambda m: m["config"].update(num_envs=-1), ["field config.num_envs"]),
        (lambda m: m["arrays"]["physics"].update(dim=10**12), ["field arrays.physics.dim"]),
        (lambda m: next(iter(m["files"].values())).update(rows="1001"), ["rows"]),
        (lambda m: m.update(complete="yes"), ["field complete"]),
        (lambda m: m.update(episodes=2), ["episodes says 2"]),
    ],
    ids=["episodes-text", "files-list", "num-envs", "huge-dim", "rows-text", "complete-text", "count-disagrees"],
)
def test_a_bad_manifest_is_one_line_naming_the_field(small_dataset, tmp_path, monkeypatch, capsys, edit, words):
    data = _copy(small_dataset, tmp_path / "data")
    _edit_json(data / MANIFEST, edit)
    code, err = run_cli(["eval", "--model", "maze-fb", "--task", MAZE, "--data", data, "--samples", 50, "--episodes", 1], monkeypatch, capsys)
    assert_one_line_error(code, err, "manifest.json", *words)


def _rewrite_episode(path, **arrays):
    with np.load(path) as ep:
        data = {k: ep[k] for k in ep.files}
    data.update(arrays)
    np.savez_compressed(path, **data)


def test_nan_in_a_stored_physics_state_names_the_episode(small_dataset, tmp_path, monkeypatch, capsys):
    """Before: the dataset loaded, and relabelling the NaN state made MuJoCo reset it (a warning), so the
    reward of a reset state was used as this transition's."""
    data = _copy(small_dataset, tmp_path / "data")
    path = episode_files(data)[1]
    with np.load(path) as ep:
        physics = ep["physics"].copy()
    physics[500, 2] = np.nan
    _rewrite_episode(path, physics=physics)
    with pytest.raises(FastBFMError, match=rf"corrupt episode .*{path.name}: non-finite values in 'physics' \(row 500"):
        load_dataset(data)
    code, err = run_cli(["eval", "--model", "maze-fb", "--task", MAZE, "--data", data, "--samples", 3000, "--episodes", 1], monkeypatch, capsys)
    assert_one_line_error(code, err, path.name, "physics")


@pytest.mark.parametrize(
    "arrays, words",
    [
        (dict(discount=np.ones((7, 1), np.float32)), ["'discount'"]),
        (dict(discount=np.array(["a"] * 1001)), ["'discount'"]),
        (dict(action=np.zeros((1001, 2), bool)), ["'action'", "bool"]),
        (dict(observation=np.zeros((1001, 0), np.float32)), ["'observation'"]),
        (dict(observation=np.full((1001, 4), np.inf, np.float32)), ["non-finite", "'observation'"]),
    ],
    ids=["discount-length", "discount-text", "bool-action", "no-columns", "inf-obs"],
)
def test_bad_episode_arrays_are_one_line(small_dataset, tmp_path, monkeypatch, capsys, arrays, words):
    data = _copy(small_dataset, tmp_path / "data")
    (data / MANIFEST).unlink()  # as a foreign (ExORL) folder: only the per-file checks stand between
    path = episode_files(data)[0]
    _rewrite_episode(path, **arrays)
    code, err = run_cli(["pretrain", "--data", data, "--out", tmp_path / "run", "--updates", 1, "-q"], monkeypatch, capsys)
    assert_one_line_error(code, err, path.name, *words)


def test_an_array_header_cannot_ask_for_a_huge_allocation(small_dataset, tmp_path):
    """A 1 kB member whose .npy header claims 10^11 rows: numpy allocates the claimed size before reading."""
    data = _copy(small_dataset, tmp_path / "data")
    path = episode_files(data)[0]
    with np.load(path) as ep:
        arrays = {k: ep[k] for k in ep.files}
    with zipfile.ZipFile(path, "w") as archive:
        for key, value in arrays.items():
            with archive.open(f"{key}.npy", "w") as f:
                if key == "physics":
                    header = {"descr": "<f8", "fortran_order": False, "shape": (10**11, 4)}
                    np.lib.format.write_array_header_1_0(f, header)
                    f.write(b"\0" * 1024)
                else:
                    np.lib.format.write_array(f, value)
    with pytest.raises(FastBFMError, match=r"corrupt episode .*'physics' claims shape \(100000000000, 4\)"):
        load_dataset(data)


# -- grid cells, grid budgets, run results ----------------------------------------------------------


def _grid_with_cell(tmp_path, edit):
    """A grid folder whose one cell is already written, then changed by ``edit``."""
    out = tmp_path / "grid"
    cell = write_grid_with_cell(out, zero_shot=1.0, final=2.0)
    edit(cell)
    cell_path(out).write_text(json.dumps(cell))
    return out


GRID_ARGS = ["--model", "maze-fb", "--task", MAZE, "--method", "zero-shot", "--seeds", 1, "--episodes", 1, "--eval-episodes", 1, "-q"]


def test_a_good_grid_cell_is_read(tmp_path, monkeypatch, capsys):
    out = _grid_with_cell(tmp_path, lambda c: None)
    code, err = run_cli(["grid", "--out", out, *GRID_ARGS], monkeypatch, capsys)
    assert code == 0, err
    assert json.loads((out / "results.json").read_text())["results"][0]["final"] == 2.0


@pytest.mark.parametrize(
    "edit, words",
    [
        (lambda c: c["result"].update(curves="2.0"), ["result.curves"]),
        (lambda c: c["result"].update(curves=[[1.0, 2.0]]), ["a curve has 2 points for 1 budgets"]),
        (lambda c: c["cell"].update(seed="0"), ["cell.seed"]),
        (lambda c: c.pop("result"), ["result"]),
        (lambda c: c["result"].update(zero_shot=None), ["result.zero_shot"]),
    ],
    ids=["curves-text", "curve-length", "seed-text", "no-result", "null-zero-shot"],
)
def test_a_bad_grid_cell_is_one_line(tmp_path, monkeypatch, capsys, edit, words):
    """Before: KeyError / TypeError tracebacks while merging the cells."""
    out = _grid_with_cell(tmp_path, edit)
    code, err = run_cli(["grid", "--out", out, *GRID_ARGS], monkeypatch, capsys)
    assert_one_line_error(code, err, "grid cell", "seed0.json", *words)


def test_a_bad_grid_budget_is_one_line(tmp_path, monkeypatch, capsys):
    out = _grid_with_cell(tmp_path, lambda c: None)
    (out / "grid.json").write_text("[1, 2]")
    code, err = run_cli(["grid", "--out", out, *GRID_ARGS], monkeypatch, capsys)
    assert_one_line_error(code, err, "grid.json")


@pytest.mark.parametrize(
    "results, words",
    [
        ([{"task": MAZE, "zero_shot": 1.0, "final": 2.0, "episodes": [0, 1], "curves": [[1.0]]}], ["a curve has 1 points"]),
        ([{"task": MAZE, "zero_shot": "1", "final": 2.0, "episodes": [0], "curves": [[1.0]]}], ["results.0.zero_shot"]),
        ([{"task": MAZE, "zero_shot": 1.0, "final": 2.0, "episodes": [0], "curves": [1.0]}], ["results.0.curves.0"]),
    ],
    ids=["curve-length", "text", "flat-curves"],
)
def test_bad_run_results_are_one_line(tmp_path, monkeypatch, capsys, results, words):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "results.json").write_text(json.dumps({"model": "maze-fb", "results": results}))
    code, err = run_cli(["report", tmp_path / "run", "-q"], monkeypatch, capsys)
    assert_one_line_error(code, err, "results.json", *words)


# -- bounded integer options, non-negative seeds -----------------------------------------------------


@pytest.mark.parametrize(
    "args, option",
    [
        (["collect", "--out", "d", "--episodes", 10**12], "--episodes"),
        (["collect", "--out", "d", "--num-envs", 10**9], "--num-envs"),
        (["collect", "--out", "d", "--segment-length", 10**9], "--segment-length"),
        (["collect", "--out", "d", "--seed", -1], "--seed"),
        (["collect", "--out", "d", "--seed", 2**70], "--seed"),
        (["adapt", "--model", "maze-fb", "--task", MAZE, "--seeds", 10**9], "--seeds"),
        (["adapt", "--model", "maze-fb", "--task", MAZE, "--first-seed", 2**64], "--first-seed"),
        (["adapt", "--model", "maze-fb", "--task", MAZE, "--eval-episodes", 10**9], "--eval-episodes"),
        (["eval", "--model", "maze-fb", "--task", MAZE, "--seed", -3], "--seed"),
        (["eval", "--model", "maze-fb", "--task", MAZE, "--episodes", 10**9], "--episodes"),
        (["pretrain", "--data", "d", "--out", "r", "--threads", 10**6], "--threads"),
        (["pretrain", "--data", "d", "--out", "r", "--seed", -1], "--seed"),
        (["grid", "--out", "g", "--model", "maze-fb", "--task", MAZE, "--workers", 10**6], "--workers"),
        (["grid", "--out", "g", "--model", "maze-fb", "--task", MAZE, "--seeds", 10**6], "--seeds"),
        (["headroom", "--model", "maze-fb", "--task", MAZE, "--latents", 10**9], "--latents"),
        (["render", "--out", "x.gif", "--seed", -1], "--seed"),
        (["render", "--out", "x.gif", "--width", 10**6], "--width"),
        (["bench", "sim", "--envs", 10**9], "--envs"),
    ],
)
def test_integer_options_are_bounded(tmp_path, monkeypatch, capsys, args, option):
    """Before: huge values reached allocators or range() (MemoryError, OverflowError) and negative seeds
    numpy's SeedSequence (ValueError), as tracebacks; now usage errors (exit 2) before any work."""
    monkeypatch.chdir(tmp_path)
    code, err = run_cli(args, monkeypatch, capsys)
    assert code == 2, err
    assert_one_line_error(code, err, option)


def _tiny_model():
    torch.manual_seed(0)
    return FBModel(FBModelConfig(obs_dim=4, action_dim=2, z_dim=6, hidden_dim=16, backward_hidden_dim=16))


def _prompt(model):
    w = torch.ones(6)
    return TaskPrompt(z=model.project(w), w=w, num_samples=1, num_rewarded=1)


@pytest.mark.parametrize(
    "call",
    [
        lambda tmp: collect(CollectConfig(episodes=1, num_envs=1, seed=-1), tmp, progress=False),
        lambda tmp: pretrain(tmp, tmp / "run", "cpu", -1, 1, progress=False),
        lambda tmp: lola_seeds(_tiny_model(), get_task(MAZE), _prompt(_tiny_model()), LoLAConfig(episodes=1, eval_episodes=1), [-1]),
        lambda tmp: eval_start_states(get_task(MAZE), 1, -5),
        lambda tmp: CollectConfig(seed=2**40),
        lambda tmp: CollectConfig(episodes=10**9),
    ],
    ids=["collect", "pretrain", "adapt", "eval", "collect-huge-seed", "collect-huge-episodes"],
)
def test_the_python_api_refuses_bad_seeds_and_sizes(tmp_path, call):
    with pytest.raises(FastBFMError, match="must be an integer from"):
        call(tmp_path)


# -- a method that cannot spend its budget -----------------------------------------------------------


@pytest.mark.parametrize("method", ["cmaes", "cem"])
def test_a_search_whose_budget_is_below_one_generation_says_so(method):
    """Before: exit 0 with zero-shot reported as the method's result (0.0% change)."""
    model = _tiny_model()
    config = SearchConfig(method=method, episodes=3, population=4, eval_episodes=1, safe=None)  # the ungated method's own check
    with pytest.raises(FastBFMError, match=rf"{method} on {MAZE}: a budget of 3 episodes is less than one round .*at least 4 episodes"):
        search_seeds(model, get_task(MAZE), _prompt(model), config, [0])


def test_adapt_cmaes_below_one_generation_is_an_error(small_dataset, monkeypatch, capsys):
    code, err = run_cli(["adapt", "--model", "maze-fb", "--task", MAZE, "--method", "cmaes", "--episodes", 2, "--candidates", 4,
                         "--seeds", 1, "--eval-episodes", 1, "--data", small_dataset, "--no-safe", "-q"], monkeypatch, capsys)
    assert_one_line_error(code, err, "budget of 2 episodes", "at least 4 episodes")
    # gated (the default), the duels' cost is named first
    code, err = run_cli(["adapt", "--model", "maze-fb", "--task", MAZE, "--method", "cmaes", "--episodes", 2, "--candidates", 4,
                         "--seeds", 1, "--eval-episodes", 1, "--data", small_dataset, "-q"], monkeypatch, capsys)
    assert_one_line_error(code, err, "duels cost 8 episodes", "--no-safe")


# -- collect rerun with fewer episodes ---------------------------------------------------------------


def test_collect_interrupted_then_rerun_with_fewer_episodes_is_refused(tmp_path, monkeypatch, capsys):
    """Before: the rerun kept all 6 episodes and wrote a complete manifest whose config said 3."""
    out = tmp_path / "d"
    recipe = default_collect_config("point_mass_maze", episodes=6, num_envs=3, seed=4)  # what the CLI collects
    collect(recipe, out, progress=False)
    _edit_json(out / MANIFEST, lambda m: m.update(complete=False))  # as if killed before the final manifest
    before = sorted(p.name for p in out.glob("*.npz"))
    code, err = run_cli(["collect", "--out", out, "--episodes", 3, "--num-envs", 3, "--seed", 4, "-q"], monkeypatch, capsys)
    assert_one_line_error(code, err, "holds 6 episodes", "episodes 6 -> 3", "--episodes 6")
    assert sorted(p.name for p in out.glob("*.npz")) == before  # nothing lost
    collect(recipe, out, progress=False)  # the original command finishes it
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["complete"] and manifest["episodes"] == manifest["config"]["episodes"] == 6


def test_collect_rerun_with_fewer_episodes_than_a_finished_folder_is_refused(tmp_path):
    """Before: returned early, and the CLI rewrote the dataset card with the smaller recipe."""
    collect(CollectConfig(episodes=6, num_envs=3, seed=4), tmp_path, progress=False)
    with pytest.raises(FastBFMError, match="holds 6 episodes, more than the 3 asked"):
        collect(CollectConfig(episodes=3, num_envs=3, seed=4), tmp_path, progress=False)


def test_collect_cut_early_then_rerun_with_fewer_episodes_matches_a_straight_run(tmp_path):
    """Fewer episodes than were asked before, but no more than were written: an honest, smaller dataset."""
    collect(CollectConfig(episodes=3, num_envs=3, seed=4), tmp_path / "cut", progress=False)
    _edit_json(tmp_path / "cut" / MANIFEST, lambda m: (m.update(complete=False), m["config"].update(episodes=9)))
    collect(CollectConfig(episodes=5, num_envs=3, seed=4), tmp_path / "cut", progress=False)
    collect(CollectConfig(episodes=5, num_envs=3, seed=4), tmp_path / "straight", progress=False)
    manifest = json.loads((tmp_path / "cut" / MANIFEST).read_text())
    assert manifest["episodes"] == manifest["config"]["episodes"] == 5
    for a, b in zip(episode_files(tmp_path / "cut"), episode_files(tmp_path / "straight"), strict=True):
        with np.load(a) as x, np.load(b) as y:
            np.testing.assert_array_equal(x["physics"], y["physics"])


# -- two processes writing one folder ----------------------------------------------------------------


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def _second_writer_is_refused(first, second, started, monkeypatch, capsys, timeout=300):
    """Start ``first`` (a real `fastbfm` process); once ``started()`` holds, ``second`` (run here) must
    fail at once with a one-line error."""
    proc = subprocess.Popen([sys.executable, "-m", "fastbfm", *map(str, first)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=_env(), cwd=REPO)
    try:
        deadline = time.monotonic() + timeout
        while not started():
            assert proc.poll() is None, f"the first writer ended first: {proc.stderr.read().decode()[-2000:]}"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        code, err = run_cli(second, monkeypatch, capsys)
        assert proc.poll() is None, "the first writer ended before the second was refused: the test proves nothing"
    finally:
        if proc.poll() is None:  # only the process started here
            proc.kill()
        proc.wait()
    assert_one_line_error(code, err, "another process")


def test_two_collections_into_one_folder(tmp_path, monkeypatch, capsys):
    """Before: both wrote episodes and manifests into the folder and both exited 0."""
    out = tmp_path / "d"
    args = ["collect", "--out", out, "--episodes", 400, "--num-envs", 2, "-q"]
    _second_writer_is_refused(args, args, lambda: (out / MANIFEST).is_file(), monkeypatch, capsys)


def test_two_grids_into_one_folder(tmp_path, monkeypatch, capsys):
    out = tmp_path / "g"
    first = ["grid", "--out", out, "--model", "maze-fb", "--task", MAZE, "--method", "oracle", "--seeds", 1, "--workers", 1, "-q"]
    second = ["grid", "--out", out, "--model", "maze-fb", "--task", MAZE, "--method", "zero-shot", "--seeds", 1, "--eval-episodes", 1, "-q"]
    _second_writer_is_refused(first, second, lambda: (out / "grid.json").is_file(), monkeypatch, capsys)


def test_two_adapt_runs_into_one_folder(tmp_path, small_dataset, monkeypatch, capsys):
    out = tmp_path / "run"
    first = ["adapt", "--model", "maze-fb", "--task", MAZE, "--method", "lola", "--episodes", 100, "--seeds", 1, "--data", small_dataset,
             "--out", out, "-q"]
    second = ["adapt", "--model", "maze-fb", "--task", MAZE, "--method", "opti-ucb", "--episodes", 1, "--seeds", 1, "--eval-episodes", 1,
              "--out", out, "-q"]
    _second_writer_is_refused(first, second, lambda: out.is_dir(), monkeypatch, capsys)


def _lock_is_held(folder: Path) -> bool:
    """Whether another process holds ``folder``'s lock (probed without taking it for long)."""
    import fcntl

    lock = folder / ".fastbfm.lock"
    if not lock.exists():
        return False
    with open(lock) as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
    return False


def test_a_report_or_a_render_into_a_folder_being_written_is_refused(tmp_path, small_dataset, monkeypatch, capsys):
    """Before: a second report (or a render) wrote videos and report.html beside the first."""
    run = tmp_path / "run"
    code, err = run_cli(["adapt", "--model", "maze-fb", "--task", MAZE, "--method", "lola", "--no-safe", "--episodes", 2, "--seeds", 1,
                         "--data", small_dataset, "--eval-episodes", 1, "--out", run, "-q"], monkeypatch, capsys)  # fmt: skip
    assert code == 0, err
    slow_report = ["report", run, "--videos", "--data", small_dataset, "--steps", 1000, "--every", 1, "-q"]
    _second_writer_is_refused(slow_report, ["report", run, "-q"], lambda: _lock_is_held(run), monkeypatch, capsys)
    _second_writer_is_refused(slow_report, ["render", "--z-from", run, "--out", run / "x.gif", "--steps", 2, "-q"], lambda: _lock_is_held(run),
                              monkeypatch, capsys)  # fmt: skip
    assert not (run / "x.gif").exists()


@pytest.mark.parametrize(
    "latents, words",
    [([["x", [0.5, 0.5], None, [0.5]]], ["corrupt results", "latents"]),
     ([[[0.5, 0.5]] * 3], ["latents number 3 for 4 budgets"]),
     ([[[0.5, 0.5]] * 4], ["episode 0 latent", "has 2 values, the model's latents 50"])],
)  # fmt: skip
def test_evolution_latents_of_the_wrong_type_or_size_are_one_line(tmp_path, monkeypatch, capsys, latents, words):
    """Before: `render --evolution` did not read them through the schema and ended in a traceback."""
    result = {"task": MAZE, "method": "lola", "seeds": [0], "zero_shot": 1.0, "final": 2.0, "episodes": [0, 5, 10, 20],
              "curves": [[1.0, 2.0, 2.0, 2.0]], "z": [[0.1] * 50], "latents": latents}  # fmt: skip
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "results.json").write_text(json.dumps({"model": "maze-fb", "results": [result]}))
    code, err = run_cli(["render", "--z-from", tmp_path / "run", "--evolution", "--out", tmp_path / "x.gif", "--steps", 2, "-q"], monkeypatch, capsys)
    assert_one_line_error(code, err, *words)


def test_a_latent_of_the_wrong_size_in_results_is_one_line(tmp_path, monkeypatch, capsys):
    """Before: a RuntimeError traceback from the policy's matrix product."""
    result = {"task": MAZE, "method": "lola", "seeds": [0], "zero_shot": 1.0, "final": 2.0, "episodes": [0, 1], "curves": [[1.0, 2.0]],
              "z": [[0.5, 0.5, 0.5]], "z_zero_shot": [0.1] * 50}
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "results.json").write_text(json.dumps({"model": "maze-fb", "results": [result]}))
    code, err = run_cli(["render", "--z-from", tmp_path / "run", "--out", tmp_path / "x.gif", "--steps", 2, "-q"], monkeypatch, capsys)
    assert_one_line_error(code, err, "has 3 values, the model's latents 50")


def test_a_run_folder_whose_model_path_now_holds_another_model_is_refused(tmp_path, small_dataset, monkeypatch, capsys):
    """Before: `render --z-from RUN` rendered the run's latents with whatever model its path held now."""
    import shutil

    def write_model(seed):
        torch.manual_seed(seed)
        shutil.rmtree(tmp_path / "model", ignore_errors=True)
        return save_model(FBModel(FBModelConfig(obs_dim=4, action_dim=2, z_dim=8, hidden_dim=16, backward_hidden_dim=16)), tmp_path / "model",
                          meta={"train": {"discount": 0.99}})  # fmt: skip

    model, run = write_model(0), tmp_path / "run"
    code, err = run_cli(["adapt", "--model", model, "--task", MAZE, "--method", "lola", "--no-safe", "--episodes", 1, "--seeds", 1,
                         "--eval-episodes", 1, "--data", small_dataset, "--out", run, "-q"], monkeypatch, capsys)  # fmt: skip
    assert code == 0, err
    render = ["render", "--z-from", run, "--out", tmp_path / "x.gif", "--steps", 2, "-q"]
    code, err = run_cli(render, monkeypatch, capsys)
    assert code == 0, err
    write_model(1)  # another model at the same path
    code, err = run_cli([*render[:-1], "--data", small_dataset, "-q"], monkeypatch, capsys)
    assert_one_line_error(code, err, "was adapted with other weights than", str(model))
