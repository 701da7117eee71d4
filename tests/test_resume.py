"""kill -9 at random points of `fastbfm pretrain`, then the same command again: the weights, the whole
trainer state and metrics.jsonl, row by row (all but the wall-clock time_s), equal an uninterrupted run."""

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from fastbfm.bfm.checkpoint import load_model
from fastbfm.bfm.train import pretrain
from tests.cli_helpers import kill_when, one_thread_env

REPO = Path(__file__).resolve().parent.parent
TINY_CLI = (
    "import sys; from fastbfm.bfm import fb; "
    "fb.PRESETS['tiny'] = (dict(z_dim=8, hidden_dim=32, backward_hidden_dim=32), fb.FBTrainConfig(batch_size=32)); "
    "from fastbfm.cli import main; sys.argv = ['fastbfm', *sys.argv[1:]]; main()"
)
UPDATES, CHECKPOINT_EVERY, LOG_EVERY = 300, 60, 10


def _rows(run):
    path = run / "metrics.jsonl"
    rows = []
    for line in path.read_text().splitlines() if path.is_file() else []:
        try:
            rows.append({k: v for k, v in json.loads(line).items() if k != "time_s"})
        except json.JSONDecodeError:
            pass  # a line being written
    return rows


def _command(data, run):
    args = ["pretrain", "--data", data, "--out", run, "--updates", UPDATES, "--checkpoint-every", CHECKPOINT_EVERY]
    args += ["--log-every", LOG_EVERY, "--threads", 1, "--device", "cpu", "-q", "--preset", "tiny"]
    return [sys.executable, "-c", TINY_CLI, *map(str, args)]


def _checkpoint_step(run):
    try:
        return json.loads((run / "trainer.json").read_text())["step"]
    except (OSError, ValueError):
        return 0


def _kill_and_resume(data, tmp_path, kill_rows):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    pretrain(data, straight, "tiny", 0, UPDATES, CHECKPOINT_EVERY, LOG_EVERY, threads=1, progress=False, device="cpu")
    seen = []
    for rows in kill_rows:
        kill_when(_command(data, killed), lambda: len(_rows(killed)) >= rows, may_finish=True)
        seen.append(_checkpoint_step(killed))
    done = subprocess.run(_command(data, killed), capture_output=True, text=True, env=one_thread_env(), cwd=REPO, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    expected = _rows(straight)
    assert [r["step"] for r in expected] == list(range(LOG_EVERY, UPDATES + 1, LOG_EVERY))
    assert _rows(killed) == expected
    a, b = load_model(straight).state_dict(), load_model(killed).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    ta, tb = (load_file(run / f"trainer-{UPDATES:09d}.safetensors") for run in (straight, killed))
    assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)
    return seen


def test_kill_9_before_and_after_the_first_checkpoint_leaves_the_log_of_an_uninterrupted_run(maze_dataset_dir, tmp_path, tiny_preset):
    # 2 rows: before the first checkpoint (rows logged, no trainer.json); 11 rows: after it, mid-interval
    seen = _kill_and_resume(maze_dataset_dir, tmp_path, [2, 11])
    assert seen[0] == 0 and seen[1] >= CHECKPOINT_EVERY


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(3))
def test_kill_9_at_random_points_repeatedly(maze_dataset_dir, tmp_path, tiny_preset, seed):
    rng = random.Random(seed)
    points = sorted(rng.sample(range(1, UPDATES // LOG_EVERY), 4))
    _kill_and_resume(maze_dataset_dir, tmp_path, points)
