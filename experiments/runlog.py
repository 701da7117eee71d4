"""What the experiment scripts share: running `fastbfm` and their results logs (one JSON row per finished
run in RUNS/results.jsonl, so that a rerun does only what is missing)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def run_fastbfm(*args: str) -> str:
    """`fastbfm ARGS`'s stdout; the script stops with its stderr if it fails."""
    done = subprocess.run(["fastbfm", *map(str, args)], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"fastbfm {' '.join(map(str, args))} failed:\n{done.stderr[-2000:]}")
    return done.stdout


def read_rows(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def append_row(log: Path, row: dict) -> None:
    with log.open("a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps(row), flush=True)
