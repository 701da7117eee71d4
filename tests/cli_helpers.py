"""The command line in tests: run in the test process, killed mid-run in a subprocess, the one-line error
every user mistake must end in, and a grid folder as `fastbfm grid` writes it."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fastbfm.cli import main

REPO = Path(__file__).resolve().parent.parent
MAZE = "point_mass_maze:reach_top_left"


def one_thread_env() -> dict:
    """The environment of a CLI subprocess: one OpenMP thread, so runs are comparable across machines."""
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def run_cli(args, monkeypatch, capsys):
    """`fastbfm ARGS` through the real entry point in this process (no interpreter start-up per case):
    (exit code, stderr)."""
    monkeypatch.setattr(sys, "argv", ["fastbfm", *map(str, args)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    return exit_info.value.code, capsys.readouterr().err


def assert_one_line_error(code, stderr, *words):
    """A non-zero exit and a single stderr line `error: ...` containing each of ``words``."""
    lines = stderr.strip().splitlines()
    assert code not in (0, None), stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr[-2000:]
    for word in words:
        assert word in lines[0], (word, lines[0])


def kill_when(cmd, ready, may_finish=False, timeout=300):
    """Start ``cmd`` (from the repository root) and SIGKILL it as soon as ``ready()`` holds. A command
    that finishes first fails the test, unless ``may_finish``."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=one_thread_env(), cwd=REPO)
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            if proc.poll() is not None:
                assert may_finish, f"finished before it could be killed: {proc.stderr.read().decode()[-2000:]}"
                break
            assert time.monotonic() < deadline, "timed out waiting to kill"
            time.sleep(0.005)
    finally:
        if proc.poll() is None:  # only the process started here
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode in ((0, -signal.SIGKILL) if may_finish else (-signal.SIGKILL,)), proc.stderr.read().decode()[-2000:]
    return proc


def write_grid_with_cell(out: Path, zero_shot: float, final: float) -> dict:
    """A grid folder (budget 1) whose one cell, maze-fb on reach_top_left, zero-shot, seed 0, is written as
    `fastbfm grid` writes it (running the grid would start a worker pool: slow to import); returns the cell."""
    (out / "cells").mkdir(parents=True)
    (out / "grid.json").write_text(json.dumps({"episodes": 1, "eval_episodes": 1, "eval_every": 0.0}))
    cell = {"format_version": 1, "cell": {"model": "maze-fb", "task": MAZE, "method": "zero-shot", "seed": 0}, "budget_episodes": 1,
            "result": {"task": MAZE, "method": "zero-shot", "seeds": [0], "zero_shot": zero_shot, "final": final, "episodes": [0.0],
                       "curves": [[final]], "compute_s_per_episode": 0.0, "sim_s_per_episode": 0.0}}
    cell_path(out).write_text(json.dumps(cell))
    return cell


def cell_path(out: Path) -> Path:
    return out / "cells" / f"maze-fb__{MAZE.replace(':', '-')}__zero-shot__seed0.json"
