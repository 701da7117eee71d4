"""The command line run in the test process, and the one-line error every user mistake must end in."""

import sys

import pytest

from fastbfm.cli import main


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
