import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from fastbfm.bfm.checkpoint import save_model
from fastbfm.bfm.fb import FBModel, FBModelConfig
from fastbfm.cli import main
from tests.cli_helpers import assert_one_line_error, run_cli

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def fastbfm(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "fastbfm", *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=600)


@pytest.fixture(scope="module")
def corrupt_checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corrupt")
    save_model(FBModel(FBModelConfig(obs_dim=4, action_dim=2, z_dim=8, hidden_dim=16, backward_hidden_dim=16)), folder)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-50])
    return folder


def test_bad_input_table(tmp_path, corrupt_checkpoint, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    cases = [
        (["eval", "--model", "maze-fb", "--task", "walker3:run"], ["unknown domain", "walker3"]),
        (["eval", "--model", "maze-fb", "--task", "point_mass_maze:reach_middle"], ["unknown task", "reach_middle"]),
        (["eval", "--model", tmp_path / "missing", "--task", "point_mass_maze:reach_top_left"], ["unknown model", "missing"]),
        (["eval", "--model", corrupt_checkpoint, "--task", "point_mass_maze:reach_top_left"], ["corrupt checkpoint"]),
        (["pretrain", "--data", tmp_path / "empty", "--out", tmp_path / "run"], ["empty dataset"]),
        (["collect", "--domain", "nope", "--out", tmp_path / "d"], ["unknown domain", "nope"]),
        (["eval", "--model", "maze-fb", "--task", "walker:no_such_rewards_mod:f"], ["cannot import the reward module"]),
        (["eval", "--model", "maze-fb", "--task", "walker:run"], ["does not fit", "walker:run"]),
        (["adapt", "--model", "maze-fb", "--task", "point_mass_maze:reach_top_left", "--method", "magic"], ["unknown method"]),
    ]
    for args, words in cases:
        assert_one_line_error(*run_cli(args, monkeypatch, capsys), *words)


def test_end_to_end_cli(tmp_path):
    collected = fastbfm("collect", "--out", tmp_path / "data", "--episodes", 20, "--num-envs", 10, "-q", "--json")
    assert collected.returncode == 0, collected.stderr
    assert json.loads(collected.stdout)["transitions"] == 20_000
    trained = fastbfm("pretrain", "--data", tmp_path / "data", "--out", tmp_path / "run", "--updates", 20, "-q", "--json")
    assert trained.returncode == 0, trained.stderr
    assert json.loads(trained.stdout)["updates"] == 20
    task = "point_mass_maze:reach_top_left"
    evaluated = fastbfm("eval", "--model", tmp_path / "run", "--task", task, "--data", tmp_path / "data", "--episodes", 2, "--json")
    assert evaluated.returncode == 0, evaluated.stderr
    row = json.loads(evaluated.stdout)["results"][0]
    assert row["task"] == task and row["episodes"] == 2 and row["zero_shot"] >= 0
    adapted = fastbfm(
        "adapt", "--model", tmp_path / "run", "--task", task, "--data", tmp_path / "data", "--episodes", 2, "--seeds", 1,
        "--eval-episodes", 2, "--no-safe", "--plot", tmp_path / "curves.png", "--json", "-q",
    )
    assert adapted.returncode == 0, adapted.stderr
    result = json.loads(adapted.stdout)["results"][0]
    assert len(result["curves"][0]) == len(result["episodes"]) == 3
    assert (tmp_path / "curves.png").stat().st_size > 1000


def test_user_reward_and_locomotion_through_the_cli(tmp_path):
    """A walker dataset with its card, a tiny walker model, and a user reward module from the working folder."""
    (tmp_path / "my_rewards.py").write_text((EXAMPLES / "my_rewards.py").read_text())
    collected = fastbfm("collect", "--domain", "walker", "--out", tmp_path / "data", "--episodes", 40, "--num-envs", 20, "-q", "--json", cwd=tmp_path)
    assert collected.returncode == 0, collected.stderr
    card = json.loads(collected.stdout)
    assert card["transitions"] == 40 * 25 and set(card["tasks"]) == {"walker:stand", "walker:walk", "walker:run", "walker:flip"}
    assert (tmp_path / "data" / "DATASET_CARD.md").is_file() and (tmp_path / "data" / "coverage.png").stat().st_size > 1000
    save_model(FBModel(FBModelConfig(obs_dim=24, action_dim=6, z_dim=8, hidden_dim=16, backward_hidden_dim=16)), tmp_path / "model")
    task = "walker:my_rewards:walk_backward"
    evaluated = fastbfm("eval", "--model", "model", "--task", task, "--data", "data", "--episodes", 2, "--samples", 500, "--json", cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    row = json.loads(evaluated.stdout)["results"][0]
    assert row["task"] == task and 0 <= row["zero_shot"] <= 1000


def test_tasks_and_benchmarks_print_measured_figures():
    listed = fastbfm("tasks", "--json")
    assert len(json.loads(listed.stdout)["tasks"]) == 16
    relabelled = fastbfm("bench", "relabel", "--samples", 2000, "--json")
    assert relabelled.returncode == 0, relabelled.stderr
    r = json.loads(relabelled.stdout)
    assert r["samples"] == 2000 and r["max_abs_difference"] < 1e-9 and r["speedup"] > 0
    trained = fastbfm("bench", "train", "--updates", 10, "--algorithm", "fb", "--algorithm", "psm", "--device", "cpu", "--json")
    assert trained.returncode == 0, trained.stderr
    t = json.loads(trained.stdout)
    assert t["device_type"] == "cpu" and t["device"]
    ours = [r for r in t["results"] if r["implementation"] == "fastbfm"]
    precisions = ["fp32", "bf16"] if t["native_bf16"] else ["fp32"]  # bf16 beside fp32 only where it is native
    assert [(r["algorithm"], r["preset"], r["mode"], r["precision"]) for r in ours] == [
        (a, "cpu", "eager", p) for a in ("fb", "psm") for p in precisions
    ]
    assert all(r["updates_per_s"] > 0 for r in ours) and sum(r["default"] for r in ours) == 2
    assert all(r["bf16_speedup"] > 0 for r in ours if r["precision"] == "bf16")
    assert isinstance(t["vector_extensions"], list)
    if importlib.util.find_spec("metamotivo") is not None:  # the same-run baseline at FB's sizes
        (mm,) = [r for r in t["results"] if r["implementation"] == "metamotivo"]
        assert (mm["hidden"], mm["batch_size"], mm["z_dim"]) == (256, 256, 50)
        assert all(r["vs_metamotivo"] > 0 for r in ours if r["algorithm"] == "fb")
    simulated = fastbfm("bench", "sim", "--envs", 8, "--steps", 20, "--json")
    assert simulated.returncode == 0, simulated.stderr
    s = json.loads(simulated.stdout)
    assert min(s["batched_steps_per_s"], s["dm_control_loop_steps_per_s"], s["raw_physics_steps_per_s"]) > 0


def test_doctor_passes_here_and_names_the_fix_for_a_wrong_pin(monkeypatch, capsys):
    from fastbfm import doctor

    assert all(row["status"] == "ok" for row in doctor.checks(render=False) if row["check"].startswith(("mujoco", "dm_control", "torch >=")))
    real = doctor._version
    monkeypatch.setattr(doctor, "_version", lambda package: "4.0.0" if package == "mujoco" else real(package))
    monkeypatch.setattr(sys, "argv", ["fastbfm", "doctor", "--json"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 1
    rows = {r["check"]: r for r in json.loads(capsys.readouterr().out)["checks"]}
    assert rows["mujoco 3.17"]["status"] == "fail" and "mujoco==3.17" in rows["mujoco 3.17"]["fix"]


@pytest.mark.parametrize("algorithm", ["hilp", "psm"])
def test_successor_feature_bfms_train_prompt_and_adapt_through_the_cli(algorithm, maze_dataset_dir, tmp_path):
    run = tmp_path / "run"
    trained = fastbfm("pretrain", "--algorithm", algorithm, "--data", maze_dataset_dir, "--out", run, "--updates", 10, "-q", "--json")
    assert trained.returncode == 0, trained.stderr
    assert json.loads(trained.stdout)["algorithm"] == algorithm
    task = "point_mass_maze:reach_top_left"
    common = ["--model", run, "--task", task, "--data", maze_dataset_dir, "--json"]
    evaluated = fastbfm("eval", *common, "--episodes", 2)
    assert evaluated.returncode == 0, evaluated.stderr
    assert fastbfm("eval", *common, "--episodes", 2, "--goal", "-0.15,0.15,0,0").returncode == 0
    adapted = fastbfm("adapt", *common, "--episodes", 2, "--seeds", 1, "--eval-episodes", 1, "--no-safe", "-q")
    assert adapted.returncode == 0, adapted.stderr
    assert len(json.loads(adapted.stdout)["results"][0]["curves"][0]) == 3
    too_small = fastbfm("adapt", *common, "--episodes", 2, "--seeds", 1, "--eval-episodes", 1, "-q")  # safe: the duels cost 8
    assert too_small.returncode == 1 and "duels cost 8 episodes" in too_small.stderr and len(too_small.stderr.strip().splitlines()) == 1
    wrong = fastbfm("pretrain", "--algorithm", algorithm, "--data", maze_dataset_dir, "--out", tmp_path / "x", "--lr-b", 0.1, "-q")
    assert wrong.returncode == 1 and "no training option lr_b" in wrong.stderr


def test_every_help_fits_80_columns_with_descriptions_30_wide():
    """Before: rich's framed tables wrapped `adapt --help` into a 17-character column at 80 columns."""
    import typer.main
    from typer.testing import CliRunner

    from fastbfm.cli import app

    def commands(group, prefix):
        for name, command in group.commands.items():
            yield [*prefix, name]
            if hasattr(command, "commands"):
                yield from commands(command, [*prefix, name])

    runner = CliRunner()
    for words in [[], *commands(typer.main.get_command(app), [])]:
        result = runner.invoke(app, [*words, "--help"], env={"COLUMNS": "80", "TERM": "dumb"})
        assert result.exit_code == 0, (words, result.output)
        lines = result.output.splitlines()
        assert all(len(line) <= 80 for line in lines), (words, [line for line in lines if len(line) > 80])
        indents = [len(line) - len(line.lstrip()) for line in lines if line.strip()]
        assert max(indents) <= 50, (words, max(indents))  # descriptions start by column 50: at least 30 wide
