"""One writer per output folder: ``collect``, ``pretrain``, ``grid``, ``adapt --out``, ``report`` and
``render`` hold a lock file in the folder they write, and a second process aiming at the same folder is refused at once
instead of both finishing with interleaved or duplicated results.

The lock is an advisory ``flock`` on ``.fastbfm.lock`` (Linux and macOS), which the kernel releases when
its holder exits, also by ``kill -9``: a crashed run never leaves a stale lock behind, and rerunning the
same command resumes as before. Bottom layer: imports nothing of fastbfm but its error type.
"""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from fastbfm.errors import FastBFMError

LOCK_FILE = ".fastbfm.lock"


@contextmanager
def folder_lock(folder: str | Path, command: str) -> Iterator[Path]:
    """Hold ``folder``'s lock (creating the folder) while the block runs; raise a one-line
    FastBFMError naming ``command`` and the holder's pid if another process holds it. The lock file
    keeps the pid of its last holder (a lock whose holder died is simply taken over)."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise FastBFMError(f"{folder} is a file, not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise FastBFMError(
                f"{folder} is being written by another process (pid {holder}, lock {path}); "
                f"wait for that {command} to finish, or write to another folder"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield folder
    finally:
        os.close(fd)
