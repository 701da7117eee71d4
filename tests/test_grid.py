"""Grids: cells for every model x task of its domain x method x seed, resumable, tidy outputs."""

import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fastbfm.errors import FastBFMError
from fastbfm.evaluate.grid import grid_cells, run_grid


def test_grid_cells_pair_models_with_their_domain_and_check_names():
    cells = grid_cells(["maze-fb"], ["point_mass_maze:reach_top_left", "walker:run"], ["zero-shot", "lola"], [0, 1])
    assert len(cells) == 4 and {c.task for c in cells} == {"point_mass_maze:reach_top_left"}
    with pytest.raises(FastBFMError, match="unknown method"):
        grid_cells(["maze-fb"], ["point_mass_maze:reach_top_left"], ["magic"], [0])
    with pytest.raises(FastBFMError, match="no task fits"):
        grid_cells(["maze-fb"], ["walker:run"], ["lola"], [0])


def test_grid_runs_resumes_and_writes_tidy_results(tmp_path):
    args = dict(models=["maze-fb"], tasks=["point_mass_maze:reach_top_left"], methods=["zero-shot", "cem-unsafe"], seeds=[0, 1],
                episodes=4, eval_episodes=1, workers=2, progress=False)
    first = run_grid(tmp_path / "g", **args)
    assert first["cells"] == 4 and first["ran"] == 4
    files = sorted((tmp_path / "g" / "cells").glob("*.json"))
    assert len(files) == 4
    # an interrupted grid: one cell lost; the rerun runs only that cell and gives the same table
    files[0].unlink()
    again = run_grid(tmp_path / "g", **args)
    assert again["ran"] == 1
    wall_clock = {"compute_s_per_episode", "sim_s_per_episode"}
    measured = lambda results: [{k: v for k, v in r.items() if k not in wall_clock} for r in results]  # noqa: E731
    assert measured(again["results"]) == measured(first["results"])  # wall-clock aside, the same numbers
    rows = list(csv.DictReader((tmp_path / "g" / "results.csv").open()))
    assert {r["method"] for r in rows} == {"zero-shot", "cem-unsafe"}
    assert len([r for r in rows if r["method"] == "cem-unsafe"]) == 2 * 2  # 2 seeds x (start + one generation of 4)
    payload = json.loads((tmp_path / "g" / "results.json").read_text())
    assert payload["model"] == "maze-fb" and len(payload["results"]) == 2
    with pytest.raises(FastBFMError, match="holds a grid with budget"):  # resuming with another budget would mix curves
        run_grid(tmp_path / "g", **{**args, "episodes": 8})
    # a later run that adds one method to the folder keeps the earlier methods' rows
    added = run_grid(tmp_path / "g", **{**args, "methods": ["lola-unsafe"], "seeds": [0]})
    assert added["ran"] == 1
    rows = list(csv.DictReader((tmp_path / "g" / "results.csv").open()))
    assert {r["method"] for r in rows} == {"zero-shot", "cem-unsafe", "lola-unsafe"}
    assert len(json.loads((tmp_path / "g" / "results.json").read_text())["results"]) == 3


def test_oracle_cell_pairs_the_best_latent_with_zero_shot_on_the_same_episodes(tmp_path):
    """The oracle cell of a seed evaluates on that seed's episodes: its zero-shot equals LoLA's start."""
    result = run_grid(tmp_path / "g", ["maze-fb"], ["point_mass_maze:reach_top_left"], ["lola-unsafe", "oracle"], [1],
                      episodes=1, eval_episodes=2, workers=1, progress=False)
    by = {r["method"]: r for r in result["results"]}
    # the same latent and episodes in a batch of other sizes: equal up to float rounding in the policy's matmuls
    assert by["oracle"]["zero_shot"] == pytest.approx(by["lola-unsafe"]["curves"][0][0], rel=1e-4)
    assert by["oracle"]["final"] >= by["oracle"]["zero_shot"]
    rows = list(csv.DictReader((tmp_path / "g" / "results.csv").open()))
    assert [r["episodes"] for r in rows if r["method"] == "oracle"] == ["0.0"]


def _spawn_workers_of(parents: set[int]) -> set[int]:
    """Live multiprocessing spawn workers whose parent is one of ``parents`` (other processes on the
    machine, e.g. another grid, are not counted)."""
    pids = set()
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and b"multiprocessing.spawn" in (proc / "cmdline").read_bytes():
                state, ppid = (proc / "stat").read_text().split(")")[-1].split()[:2]
                if state != "Z" and int(ppid) in parents:
                    pids.add(int(proc.name))
        except (OSError, ValueError):
            pass
    return pids


def _processes_with_arg(arg: str) -> set[int]:
    pids = set()
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and arg.encode() in (proc / "cmdline").read_bytes().split(b"\0"):
                pids.add(int(proc.name))
        except OSError:
            pass
    return pids


def _alive(pids: set[int]) -> set[int]:
    alive = set()
    for pid in pids:
        try:
            if (Path("/proc") / str(pid) / "stat").read_text().split(")")[-1].split()[0] != "Z":
                alive.add(pid)
        except OSError:
            pass
    return alive


def test_kill_9_during_a_grid_then_rerun_completes_it(tmp_path):
    from tests.cli_helpers import kill_when

    out = tmp_path / "killed"
    args = ["grid", "--out", out, "--model", "maze-fb", "--task", "point_mass_maze:reach_top_left", "--method", "zero-shot",
            "--method", "cem-unsafe", "--seeds", 2, "--episodes", 4, "--eval-episodes", 1, "--workers", 1, "-q", "--json"]
    cmd = [sys.executable, "-m", "fastbfm", *map(str, args)]
    workers: set[int] = set()

    def ready() -> bool:
        if len(list((out / "cells").glob("*.json"))) < 1:
            return False
        workers.update(_spawn_workers_of(_processes_with_arg(str(out))))  # this grid's workers, just before the kill
        return True

    kill_when(cmd, ready)
    deadline = time.monotonic() + 30
    while _alive(workers) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert workers and not _alive(workers), "the killed grid left its worker processes behind"
    kept = {p.name: p.read_text() for p in (out / "cells").glob("*.json")}
    assert 1 <= len(kept) < 4 and not (out / "results.csv").exists()
    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    summary = json.loads(rerun.stdout)
    assert summary["cells"] == 4 and summary["ran"] == 4 - len(kept)
    assert all((out / "cells" / name).read_text() == text for name, text in kept.items())  # finished cells untouched
    assert len(list(csv.DictReader((out / "results.csv").open()))) == 2 * 1 + 2 * 2


def test_a_meta_motivo_folder_runs_the_tasks_of_the_domain_its_sizes_match(tmp_path):
    """Meta Motivo configs name no domain: the grid matches the model's observation and action sizes."""
    from tests.metamotivo_fixture import write_random_checkpoint

    write_random_checkpoint(tmp_path / "mm", obs_dim=24, action_dim=6, z_dim=8)
    cells = grid_cells([str(tmp_path / "mm")], ["walker:run", "point_mass_maze:reach_top_left"], ["race"], [0])
    assert [(c.task, c.method) for c in cells] == [("walker:run", "race")]


def test_lockstep_seeds_write_the_cells_their_lone_runs_write(tmp_path):
    args = dict(models=["maze-fb"], tasks=["point_mass_maze:reach_top_left"], methods=["lola-unsafe"], seeds=[0, 1],
                episodes=1, eval_episodes=2, workers=1, progress=False)
    run_grid(tmp_path / "alone", **args)
    run_grid(tmp_path / "together", **args, lockstep=True)
    for seed in (0, 1):
        name = f"maze-fb__point_mass_maze-reach_top_left__lola-unsafe__seed{seed}.json"
        alone, together = (json.loads((tmp_path / g / "cells" / name).read_text())["result"] for g in ("alone", "together"))
        assert together["seeds"] == [seed] and len(together["episode_returns"][0][0]) == 2
        # the same runs in batches of other sizes: equal up to float rounding in the policy's matmuls
        assert together["curves"][0] == pytest.approx(alone["curves"][0], rel=1e-4)
        assert together["z"][0] == pytest.approx(alone["z"][0], rel=1e-4, abs=1e-5)
    assert (tmp_path / "together" / "episodes.csv").read_text().count("\n") == 1 + 2 * 2 * 2


def test_a_grid_resumes_only_with_the_models_it_was_run_with(tmp_path):
    """Before: a grid folder whose model path now held another model resumed with exit 0, mixing both."""
    import shutil

    import torch

    from fastbfm.bfm.checkpoint import save_model
    from fastbfm.bfm.fb import FBModel, FBModelConfig

    def write_model(seed):
        torch.manual_seed(seed)
        return save_model(FBModel(FBModelConfig(obs_dim=4, action_dim=2, z_dim=8, hidden_dim=16, backward_hidden_dim=16)), tmp_path / "model")

    model = write_model(0)
    args = dict(models=[str(model)], tasks=["point_mass_maze:reach_top_left"], methods=["zero-shot"], seeds=[0], episodes=1,
                eval_episodes=1, workers=1, progress=False)  # fmt: skip
    run_grid(tmp_path / "g", **args)
    kept = json.loads((tmp_path / "g" / "models.json").read_text())
    assert kept == {str(model): json.loads((model / "config.json").read_text())["sha256"]["model.safetensors"]}
    results = (tmp_path / "g" / "results.json").read_text()
    shutil.rmtree(model)
    write_model(1)
    with pytest.raises(FastBFMError, match=rf"holds cells of another model named {model} \(weights {kept[str(model)][:16]}"):
        run_grid(tmp_path / "g", **args)
    assert (tmp_path / "g" / "results.json").read_text() == results


def test_cells_of_a_method_whose_settings_changed_are_refused_not_mixed(tmp_path):
    """Before: cmaes-lookahead cells scored the discounted way stayed beside new ones scored by return."""
    args = dict(models=["maze-fb"], tasks=["point_mass_maze:reach_top_left"], methods=["cem-unsafe"], seeds=[0, 1], episodes=4,
                eval_episodes=1, workers=1, progress=False)  # fmt: skip
    run_grid(tmp_path / "g", **args)
    cell = sorted((tmp_path / "g" / "cells").glob("*.json"))[0]
    payload = json.loads(cell.read_text())
    payload["result"]["config"]["sigma"] = 0.5  # as if written by a fastbfm whose default differed
    cell.write_text(json.dumps(payload))
    with pytest.raises(FastBFMError, match=r"ran cem-unsafe with other settings than this fastbfm's \(sigma 0.5 -> 0.1\)"):
        run_grid(tmp_path / "g", **args)
