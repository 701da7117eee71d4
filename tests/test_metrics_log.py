"""Training curves: metrics.jsonl always, TensorBoard event files beside it with --tensorboard."""

import builtins
import json
import sys

import pytest

from fastbfm.bfm.metrics_log import open_metrics_log
from fastbfm.bfm.train import pretrain
from fastbfm.cli import main
from fastbfm.errors import FastBFMError


def _scalars(run_dir) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_event_files_hold_the_rows_of_metrics_jsonl_also_across_a_resume(maze_dataset_dir, tmp_path, tiny_preset):
    pytest.importorskip("tensorboard")
    run = tmp_path / "run"
    options = dict(checkpoint_every=20, log_every=10, threads=1, progress=False, tensorboard=True)
    pretrain(maze_dataset_dir, run, "tiny", num_updates=20, **options)
    pretrain(maze_dataset_dir, run, "tiny", num_updates=30, **options)  # resumes at 20
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    scalars = _scalars(run)
    assert [r["step"] for r in rows] == [10, 20, 30]
    metrics = [k for k in rows[0] if k not in ("step", "time_s")]
    assert {"fb_loss", "ortho_loss", "actor_q"} <= set(metrics)
    for name in metrics:
        logged = scalars[f"train/{name}"]
        assert [s for s, _ in logged] == [10, 20, 30], name
        assert [v for _, v in logged] == pytest.approx([r[name] for r in rows], rel=1e-6), name
    assert [s for s, _ in scalars["time/seconds"]] == [10, 20, 30]


def test_a_resume_purges_the_events_logged_after_its_checkpoint(tmp_path):
    pytest.importorskip("tensorboard")
    with open_metrics_log(tmp_path, tensorboard=True) as log:
        for step in (10, 20, 30):
            log.write({"step": step, "time_s": 1.0, "loss": float(step)})
    with open_metrics_log(tmp_path, tensorboard=True, resume_step=20) as log:  # killed after 30, checkpoint at 20
        log.write({"step": 30, "time_s": 2.0, "loss": -1.0})
    assert _scalars(tmp_path)["train/loss"] == [(10, 10.0), (20, 20.0), (30, -1.0)]


def test_without_tensorboard_the_flag_is_refused_in_one_line_before_anything_is_written(maze_dataset_dir, tmp_path, monkeypatch, capsys):
    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name == "tensorboard" or name.startswith(("tensorboard.", "torch.utils.tensorboard")):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    with pytest.raises(FastBFMError, match=r"pip install 'fastbfm\[tensorboard\]'"):
        with open_metrics_log(tmp_path / "x", tensorboard=True):
            pass
    monkeypatch.setattr(sys, "argv", ["fastbfm", "pretrain", "--data", str(maze_dataset_dir), "--out", str(tmp_path / "run"), "--tensorboard"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 1 and len(err) == 1 and "fastbfm[tensorboard]" in err[0]
    assert not (tmp_path / "run").exists()
