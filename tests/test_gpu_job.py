"""The GPU job (jobs/gpu_job.py) rehearsed on the CPU, its compact weights, and its slim wheels."""

import base64
import hashlib
import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from fastbfm.bfm.checkpoint import load_model, save_model
from fastbfm.bfm.fb import FBModel, FBModelConfig

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "jobs"))
import build_wheels  # noqa: E402

MAZE = "point_mass_maze:reach_top_left"
SAFE_NAME = re.compile(r"^[A-Za-z0-9._-]+$")


def test_float16_weights_load_as_float32_and_act_alike(tmp_path):
    torch.manual_seed(0)
    model = FBModel(FBModelConfig(obs_dim=4, action_dim=2, z_dim=8, hidden_dim=64, backward_hidden_dim=64))
    save_model(model, tmp_path / "full")
    save_model(model, tmp_path / "half", dtype=torch.float16)
    full, half = (tmp_path / name / "model.safetensors" for name in ("full", "half"))
    assert half.stat().st_size < 0.55 * full.stat().st_size
    loaded = load_model(tmp_path / "half")
    for key, value in loaded.state_dict().items():
        assert value.dtype == torch.float32
        assert torch.equal(value, model.state_dict()[key].half().float()), key
    obs, z = torch.randn(32, 4), model.sample_z(32, torch.Generator().manual_seed(1))
    torch.testing.assert_close(loaded.act(obs, z), model.act(obs, z), rtol=0, atol=2e-3)


def _wheel(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
        z.writestr("pkg-1.0.dist-info/RECORD", "stale\n")
    return path


@pytest.mark.parametrize(
    "package, name, dropped",
    [
        ("dm_control", "dm_control/suite/walker.xml", False),
        ("dm_control", "dm_control/suite/common/materials.xml", False),
        ("dm_control", "dm_control/suite/quadruped.py", False),
        ("dm_control", "dm_control/locomotion/walkers/cmu_humanoid.py", False),
        ("dm_control", "dm_control/locomotion/walkers/assets/humanoid.xml", True),
        ("dm_control", "dm_control/locomotion/soccer/assets/ball.png", True),
        ("dm_control", "dm_control/suite/dog_assets/skin.skn", True),
        ("dm_control", "dm_control/mujoco/testing/assets/frames/a.png", True),
        ("dm_control", "dm_control/suite/walker_test.py", True),
        ("mujoco", "mujoco/libmujoco.so.3.17.0", False),
        ("mujoco", "mujoco/_render.cpython-312-x86_64-linux-gnu.so", False),
        ("mujoco", "mujoco/experimental/studio/window.cpython-312-x86_64-linux-gnu.so", True),
    ],
)
def test_slimming_drops_only_what_the_four_domains_never_load(package, name, dropped):
    assert bool(build_wheels.SLIM[package].match(name)) == dropped


def test_a_slim_wheel_lists_exactly_its_files_and_is_rebuilt_byte_for_byte(tmp_path):
    members = {"dm_control/suite/walker.xml": b"<mujoco/>", "dm_control/suite/dog_assets/a.stl": b"x" * 100,
               "dm_control/__init__.py": b"", "dm_control/suite/walker_test.py": b"pass"}
    source = _wheel(tmp_path / "in.whl", members)
    outputs = []
    for i in range(2):
        target = tmp_path / f"out{i}.whl"
        assert build_wheels.slim_wheel(source, target, build_wheels.SLIM["dm_control"]) == (3, 2)
        outputs.append(target.read_bytes())
    assert outputs[0] == outputs[1]
    with zipfile.ZipFile(tmp_path / "out0.whl") as z:
        record = z.read("pkg-1.0.dist-info/RECORD").decode().splitlines()
        names = set(z.namelist())
        for line in record[:-1]:
            name, digest, size = line.split(",")
            data = z.read(name)
            assert digest == "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            assert int(size) == len(data)
    assert names == {"dm_control/suite/walker.xml", "dm_control/__init__.py", "pkg-1.0.dist-info/RECORD"}
    assert record[-1] == "pkg-1.0.dist-info/RECORD,,"


@pytest.mark.slow
def test_the_job_rehearsed_on_the_cpu_brings_back_a_model_that_fastbfm_eval_loads(tmp_path):
    """The whole job, as on the GPU machine but on the CPU and tiny: collect, train, pack, evaluate. What
    comes back fits the device tool's limits (at most 8 files, 2 folders deep, safe names, 16 MiB each)."""
    out = tmp_path / "OUT"
    cmd = [sys.executable, str(ROOT / "jobs" / "gpu_job.py"), "--device", "cpu", "--domain", "point_mass_maze",
           "--collect-episodes", "40", "--num-envs", "10", "--seed", "3", "--preset", "cpu", "--max-updates", "20",
           "--train-minutes", "5", "--threads", "1", "--eval-episodes", "2", "--tasks", MAZE, "--skip", "bench,tests",
           "--out", str(out), "--work", str(tmp_path / "work")]
    job = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert job.returncode == 0, job.stdout + job.stderr
    record = json.loads((out / "job.json").read_text())
    steps = {s["step"]: s for s in record["steps"]}
    assert record["ok"] and steps["pretrain"]["updates"] == 20
    assert [r["task"] for r in steps["eval"]["result"]["results"]] == [MAZE]
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) <= 8 and sum(p.stat().st_size for p in files) <= 64 * 2**20
    for p in files:
        parts = p.relative_to(out).parts
        assert len(parts) <= 3 and all(SAFE_NAME.match(part) for part in parts) and p.stat().st_size <= 16 * 2**20, p
    from safetensors import safe_open

    with safe_open(out / "model" / "model.safetensors", "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}
    evaluated = subprocess.run([sys.executable, "-m", "fastbfm", "eval", "--model", str(out / "model"), "--task", MAZE,
                                "--goal", "0.15,0.15,0,0", "--episodes", "2", "--json", "-q"], capture_output=True, text=True, timeout=600)
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads(evaluated.stdout)["results"][0]["task"] == MAZE


@pytest.mark.parametrize(
    "args, words",
    [(["--num-envs", "0"], ["--num-envs", "from 1"]), (["--eval-episodes", "-1"], ["--eval-episodes"]), (["--total-minutes", "nan"], ["--total-minutes"]),
     (["--train-minutes", "0"], ["--train-minutes"]), (["--skip", "bench,lunch"], ["--skip", "lunch"]), (["--data", "no/such/folder"], ["--data", "no such"]),
     (["--out", "{file}"], ["is a file"]), (["--work", "{file}"], ["is a file"])],
)  # fmt: skip
def test_bad_job_options_are_one_line_before_anything_runs(tmp_path, args, words):
    """Before: --num-envs 0 divided by zero after collecting, and an --out that is a file ran the job."""
    import gpu_job

    (tmp_path / "a_file").write_text("x")
    args = [a.replace("{file}", str(tmp_path / "a_file")) for a in args]
    out = [] if "--out" in args else ["--out", str(tmp_path / "OUT")]
    proc = subprocess.run([sys.executable, str(ROOT / "jobs" / "gpu_job.py"), *out, *args], capture_output=True, text=True, timeout=60)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert all(w in lines[0] for w in words), lines[0]
    assert not (tmp_path / "OUT").exists()



def test_the_job_bounds_are_the_command_lines():
    import gpu_job

    from fastbfm import schemas

    assert gpu_job.BOUNDS["seed"] == (0, schemas.MAX_SEED) and gpu_job.BOUNDS["max_updates"][1] == schemas.MAX_UPDATES
    assert gpu_job.BOUNDS["collect_episodes"][1] == schemas.MAX_COLLECT_EPISODES
    assert gpu_job.BOUNDS["eval_episodes"][1] == schemas.MAX_EVAL_EPISODES and gpu_job.BOUNDS["threads"][1] == 512
    assert gpu_job.MAX_JOB_ENVS <= schemas.MAX_NUM_ENVS and gpu_job.MAX_JOB_ENVS * 1000 <= schemas.MAX_ROUND_STEPS


def test_a_job_with_no_time_to_train_fails(tmp_path, maze_dataset_dir):
    """Before: with no time left for training the job skipped it and exited 0."""
    out = tmp_path / "OUT"
    cmd = [sys.executable, str(ROOT / "jobs" / "gpu_job.py"), "--device", "cpu", "--domain", "point_mass_maze", "--data", str(maze_dataset_dir),
           "--total-minutes", "0.1", "--skip", "bench,tests", "--out", "OUT", "--work", "work"]  # fmt: skip
    job = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)  # relative paths, from another folder
    assert job.returncode == 1, job.stdout + job.stderr
    record = json.loads((out / "job.json").read_text())
    assert not record["ok"] and any(s.get("step") == "pretrain" and "skipped" in s for s in record["steps"])
    assert record["args"]["out"] == str(out.resolve())
