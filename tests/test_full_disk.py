"""Writes that fail (a full disk, a read-only folder): one line naming the path, a non-zero exit, and
nothing already written lost. Needs a small tmpfs (root with mount rights); skipped elsewhere."""

import subprocess

import pytest

from fastbfm.bfm.checkpoint import load_model, read_json
from tests.cli_helpers import assert_one_line_error, run_cli


@pytest.fixture
def small_fs(tmp_path):
    mounted = []

    def mount(size: str):
        folder = tmp_path / f"fs{len(mounted)}"
        folder.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True)
        if done.returncode != 0:
            pytest.skip("cannot mount a tmpfs here (needs root with mount rights)")
        mounted.append(folder)
        return folder

    yield mount
    for folder in mounted:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def _fill(folder):
    """Use up the file system's free space."""
    with open(folder / "filler", "wb") as f:
        try:
            while True:
                f.write(b"\0" * (1 << 16))
                f.flush()
        except OSError:
            pass


def _temporary_files(folder):
    return [p for p in folder.rglob("*") if p.name.endswith(".tmp")]


def test_pretrain_on_a_full_disk_keeps_its_last_checkpoint(small_fs, maze_dataset_dir, tiny_preset, monkeypatch, capsys):
    fs = small_fs("4m")
    run = fs / "run"
    args = ["pretrain", "--data", maze_dataset_dir, "--out", run, "--preset", "tiny", "--checkpoint-every", 5, "--threads", 1, "-q"]
    code, err = run_cli([*args, "--updates", 5], monkeypatch, capsys)
    assert code == 0, err
    _fill(fs)
    code, err = run_cli([*args, "--updates", 10], monkeypatch, capsys)
    assert_one_line_error(code, err, "cannot write", str(run), "No space left on device")
    assert read_json(run / "trainer.json")["step"] == 5 and load_model(run).meta["updates"] == 5  # the last checkpoint, intact
    assert not _temporary_files(fs)
    (fs / "filler").unlink()
    code, err = run_cli([*args, "--updates", 10], monkeypatch, capsys)  # space again: it resumes
    assert code == 0, err
    assert read_json(run / "trainer.json")["step"] == 10


def test_collect_on_a_full_disk_is_one_line(small_fs, monkeypatch, capsys):
    fs = small_fs("1m")
    args = ["collect", "--domain", "point_mass_maze", "--out", fs / "data", "--episodes", 400, "--num-envs", 8, "-q"]
    code, err = run_cli(args, monkeypatch, capsys)
    assert_one_line_error(code, err, "cannot write", str(fs / "data"), "No space left on device")
    assert not _temporary_files(fs)


def test_writing_into_a_read_only_folder_is_one_line(small_fs, monkeypatch, capsys):
    fs = small_fs("1m")
    subprocess.run(["mount", "-o", "remount,ro", str(fs)], check=True)
    maze = "point_mass_maze:reach_top_left"
    for args in (["collect", "--domain", "point_mass_maze", "--out", fs / "data", "--episodes", 10, "-q"],
                 ["grid", "--out", fs / "g", "--model", "maze-fb", "--task", maze, "--method", "zero-shot", "--seeds", 1, "-q"],
                 ["render", "--model", "maze-fb", "--task", maze, "--out", fs / "x.gif", "--steps", 2, "-q"]):  # fmt: skip
        code, err = run_cli(args, monkeypatch, capsys)
        assert_one_line_error(code, err, "Read-only file system")
