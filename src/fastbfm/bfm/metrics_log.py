"""Where a training run's metric rows go: ``metrics.jsonl`` always, TensorBoard event files on request.

The training loop builds one row per log interval (``{"step": ..., "time_s": ..., <metric>: value}``)
and hands it to :func:`open_metrics_log`'s sink; the sinks know nothing of the trainers. TensorBoard
is an optional extra (``pip install 'fastbfm[tensorboard]'``): its event files go beside
``metrics.jsonl`` in the run folder, so ``tensorboard --logdir runs`` shows every run under ``runs/``.
"""

from __future__ import annotations

import json
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Iterator, Protocol

from fastbfm.errors import FastBFMError

METRICS_FILE = "metrics.jsonl"


class MetricsSink(Protocol):
    def write(self, row: dict) -> None:
        """One log interval: ``row["step"]`` is the update count, the other numeric fields are metrics."""


class JsonlSink:
    """Appends each row as one JSON line and flushes it, so a kill loses at most the row being written."""

    def __init__(self, path: Path):
        self.file = open(path, "a")

    def write(self, row: dict) -> None:
        self.file.write(json.dumps(row) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def tensorboard_writer_class():
    """torch's SummaryWriter, or a one-line error naming the extra to install."""
    try:
        import tensorboard  # noqa: F401  (torch.utils.tensorboard needs it, and its own ImportError is obscure)
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise FastBFMError("TensorBoard logging needs the tensorboard package: pip install 'fastbfm[tensorboard]'") from None
    return SummaryWriter


class TensorBoardSink:
    """Each metric as a scalar ``train/<name>`` at the row's step, plus the wall time as ``time/seconds``.

    ``resume_step``: events of an earlier attempt after this step are purged (a resumed run logs those
    steps again from its checkpoint, as ``metrics.jsonl`` does)."""

    def __init__(self, run_dir: Path, resume_step: int = 0):
        writer = tensorboard_writer_class()
        self.writer = writer(log_dir=str(run_dir), purge_step=resume_step + 1 if resume_step else None)

    def write(self, row: dict) -> None:
        step = int(row["step"])
        for key, value in row.items():
            if key == "step" or not isinstance(value, (int, float)):
                continue
            self.writer.add_scalar("time/seconds" if key == "time_s" else f"train/{key}", value, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class _Fanout:
    def __init__(self, sinks: list):
        self.sinks = sinks

    def write(self, row: dict) -> None:
        for sink in self.sinks:
            sink.write(row)


@contextmanager
def open_metrics_log(run_dir: str | Path, tensorboard: bool = False, resume_step: int = 0) -> Iterator[MetricsSink]:
    """The run's metric sinks as one: ``metrics.jsonl``, and TensorBoard event files with ``tensorboard``.

    A missing tensorboard package is refused before anything is written."""
    run_dir = Path(run_dir)
    if tensorboard:
        tensorboard_writer_class()
    with ExitStack() as stack:
        sinks = [JsonlSink(run_dir / METRICS_FILE)]
        stack.callback(sinks[0].close)
        if tensorboard:
            sinks.append(TensorBoardSink(run_dir, resume_step))
            stack.callback(sinks[-1].close)
        yield _Fanout(sinks)
