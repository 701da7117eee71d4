"""One training step (sample a batch, update, add the metrics to running sums) run without reading
anything back to the host, eagerly or replayed from a CUDA graph.

A step takes no input: it samples its batch from a dataset already on the device with the trainer's
device generator, and all its effects are in place on tensors that never move (weights, optimiser
state, targets, metric sums). That is what lets a CUDA graph capture it once and replay it.
"""

from __future__ import annotations

import warnings
from typing import Callable

import torch

from fastbfm.errors import FastBFMError


class MetricSums:
    """Sums of the metrics of the updates since the last log row, kept on the device.

    ``add`` launches a few kernels and never synchronises; ``read`` brings everything back in one
    transfer. ``first_bad`` is the 1-based index (within the sums) of the first update with a
    non-finite metric, 0 if none, so a divergence is reported at its own update.
    """

    def __init__(self, device: torch.device, names: list[str] | None = None):
        self.device = torch.device(device)
        self.names: list[str] | None = None
        self.count = torch.zeros((), dtype=torch.int64, device=self.device)
        self.first_bad = torch.zeros((), dtype=torch.int64, device=self.device)
        self.sums = torch.zeros(0, dtype=torch.float64, device=self.device)
        if names is not None:
            self._start(list(names))

    def _start(self, names: list[str]) -> None:
        self.names = names
        self.sums = torch.zeros(len(names), dtype=torch.float64, device=self.device)

    def add(self, metrics: dict[str, torch.Tensor | float]) -> None:
        if self.names is None:
            self._start(list(metrics))
        elif list(metrics) != self.names:
            raise FastBFMError(f"an update returned metrics {list(metrics)}, expected {self.names}")
        values = [v if torch.is_tensor(v) else torch.tensor(v, device=self.device) for v in metrics.values()]
        stacked = torch.stack(values).to(torch.float64)
        self.count.add_(1)
        bad = ~torch.isfinite(stacked).all()
        self.first_bad.copy_(torch.where(bad & (self.first_bad == 0), self.count, self.first_bad))
        self.sums.add_(stacked)

    def read(self) -> tuple[int, int, dict[str, float]]:
        """(updates summed, first non-finite update or 0, means): one host synchronisation."""
        values = torch.cat([self.sums, self.count.double().view(1), self.first_bad.double().view(1)]).tolist()
        count, first_bad = int(values[-2]), int(values[-1])
        return count, first_bad, {k: v / max(count, 1) for k, v in zip(self.names or [], values[:-2])}

    def reset(self) -> None:
        """In place: a captured graph keeps adding into the same tensors."""
        self.sums.zero_()
        self.count.zero_()
        self.first_bad.zero_()

    def state(self) -> tuple[dict[str, torch.Tensor], list[str]]:
        return {"metrics.sums": self.sums, "metrics.count": self.count, "metrics.first_bad": self.first_bad}, list(self.names or [])

    def load(self, tensors: dict[str, torch.Tensor], names: list[str]) -> None:
        if "metrics.sums" not in tensors:  # a checkpoint from before the sums were saved
            return
        self._start(list(names))
        self.sums.copy_(tensors["metrics.sums"])
        self.count.copy_(tensors["metrics.count"])
        self.first_bad.copy_(tensors["metrics.first_bad"])


def set_training_precision(trainer, bf16: bool) -> None:
    """bf16 networks (autocast inside each network's forward, float32 master weights, optimiser state,
    losses and the products of network outputs) for every network the trainer updates or bootstraps from,
    or float32 everywhere."""
    from fastbfm.bfm.nn import set_compute_dtype

    for module in (trainer.model, *trainer.modules().values()):
        set_compute_dtype(module, torch.bfloat16 if bf16 else None)


def eager_step(trainer, data, sums: MetricSums) -> Callable[[], None]:
    """The step as a function of nothing: sample, update, add the metrics to ``sums``."""

    def step() -> None:
        sums.add(trainer.update(trainer.sample_batch(data)))

    return step


class CudaGraphBackend:
    """torch.cuda's capture and replay: warm-up calls on a side stream (so lazily created optimiser
    state exists before capture), then one call captured into a ``CUDAGraph`` whose replay is the step."""

    def __init__(self, generator: torch.Generator):
        self.generator = generator
        self.stream = torch.cuda.Stream()
        self.graph: torch.cuda.CUDAGraph | None = None

    def warmup(self, fn: Callable[[], None]) -> None:
        current = torch.cuda.current_stream()
        self.stream.wait_stream(current)
        with torch.cuda.stream(self.stream):
            fn()
        current.wait_stream(self.stream)

    def capture(self, fn: Callable[[], None]) -> Callable[[], None]:
        graph = torch.cuda.CUDAGraph()
        # torch before 2.11 needs a non-default generator registered with the graph; later ones do it lazily
        if hasattr(graph, "register_generator_state"):
            graph.register_generator_state(self.generator)
        with torch.cuda.graph(graph):
            fn()
        self.graph = graph
        return graph.replay


class GraphedStep:
    """Each call runs exactly one step: the first ``warmup`` calls eagerly through the backend, then one
    capture (which runs nothing) and from then on a replay. A capture that fails falls back to eager
    steps with a warning (the capture ran no kernels, so no update was half done)."""

    def __init__(self, step: Callable[[], None], backend, warmup: int = 3):
        self.step, self.backend, self.warmup = step, backend, warmup
        self.calls = 0
        self.replay: Callable[[], None] | None = None
        self.captured = False

    def __call__(self) -> None:
        if self.replay is None:
            if self.calls < self.warmup:
                self.calls += 1
                self.backend.warmup(self.step)
                return
            try:
                self.replay = self.backend.capture(self.step)
                self.captured = True
            except Exception as e:  # any failure of capture: eager still trains correctly
                warnings.warn(f"CUDA graph capture failed ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); training eagerly", stacklevel=2)
                self.replay = self.step
        self.replay()


def make_step(trainer, data, sums: MetricSums, graphs: bool) -> Callable[[], None]:
    """The step to call once per update: replayed from a CUDA graph when ``graphs`` (CUDA only), else eager."""
    step = eager_step(trainer, data, sums)
    if not graphs:
        return step
    if trainer.device.type != "cuda":
        raise FastBFMError("CUDA graphs need a CUDA device")
    return GraphedStep(step, CudaGraphBackend(trainer.generator))
