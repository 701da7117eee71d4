"""One writer per output folder: ``collect``, ``grid``, ``adapt --out`` (and ``pretrain``) hold a lock
file in the folder they write, and a second process aiming at the same folder is refused at once
instead of both finishing with interleaved or duplicated results.

The lock is an OS file lock (``filelock``: ``flock`` on Linux and macOS), which the kernel releases when
its holder exits, also by ``kill -9``: a crashed run never leaves a stale lock behind, and rerunning the
same command resumes as before. Bottom layer: imports nothing of fastbfm but its error type.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from filelock import FileLock, Timeout

from fastbfm.errors import FastBFMError

LOCK_FILE = ".fastbfm.lock"


@contextmanager
def folder_lock(folder: str | Path, command: str) -> Iterator[Path]:
    """Hold ``folder``'s lock (creating the folder) while the block runs; raise a one-line
    FastBFMError naming ``command`` if another process holds it."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise FastBFMError(f"{folder} is a file, not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    lock = FileLock(folder / LOCK_FILE, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise FastBFMError(
            f"{folder} is being written by another process (its lock {folder / LOCK_FILE} is held); "
            f"wait for that {command} to finish, or write to another folder"
        ) from None
    try:
        yield folder
    finally:
        lock.release()
