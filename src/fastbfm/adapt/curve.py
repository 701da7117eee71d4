"""Adaptation curves: evaluation returns against the budget spent, and the compute it took."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch


@dataclass
class AdaptationCurve:
    """Evaluation returns of the adapted policy against the budget spent."""

    episodes: list[float] = field(default_factory=list)
    """Environment steps spent on adaptation, in episodes."""
    returns: list[float] = field(default_factory=list)
    """Mean evaluation return of the policy after that budget; index 0 is the zero-shot one."""
    episode_returns: list[list[float]] = field(default_factory=list)
    """Per point, the return of each evaluation episode (the seed's fixed start states, in order), so
    that two points pair up by start state."""
    latents: list[list[float] | None] = field(default_factory=list)
    """Per point, the latent evaluated (None when the policy is not one latent of the frozen model)."""
    compute_s: float = 0.0
    """Wall-clock of adaptation, simulation included, evaluation excluded."""
    sim_s: float = 0.0
    """The part of ``compute_s`` spent simulating (physics and rewards)."""
    z: torch.Tensor | None = None


Evaluation = tuple[np.ndarray, list[torch.Tensor | None]]
"""Returns (seeds, episodes) and the latent of each seed (or None)."""


class CurveRecorder:
    """The curves of seeds run in lockstep. ``eval_every`` 0 evaluates after every step of the method;
    a positive value only when the budget spent reaches the next multiple of it (and at the end), which
    spares most of the evaluation episodes on long budgets."""

    def __init__(self, eval_every: float, initial: Evaluation):
        """``initial``: each seed's evaluation returns (seeds, episodes) and latent before any adaptation."""
        self.curves = [AdaptationCurve() for _ in initial[0]]
        self._record(0.0, initial)
        self.eval_every = eval_every
        self._next = eval_every

    def step(self, spent_episodes: float, evaluate: Callable[[], Evaluation]) -> None:
        if spent_episodes + 1e-9 >= self._next or self.eval_every <= 0:
            self._record(spent_episodes, evaluate())
            if self.eval_every > 0:
                self._next = (np.floor(spent_episodes / self.eval_every + 1e-9) + 1) * self.eval_every

    def finish(self, spent_episodes: float, evaluate: Callable[[], Evaluation], compute_s: float, sim_s: float) -> list[AdaptationCurve]:
        """Evaluates the final policy if the schedule skipped it; ``compute_s`` and ``sim_s``: totals over all seeds."""
        if self.curves[0].episodes[-1] < spent_episodes - 1e-9:
            self._record(spent_episodes, evaluate())
        for curve in self.curves:
            curve.compute_s, curve.sim_s = compute_s / len(self.curves), sim_s / len(self.curves)
        return self.curves

    def _record(self, spent_episodes: float, evaluation: Evaluation) -> None:
        returns, latents = evaluation
        for curve, ret, z in zip(self.curves, returns, latents):
            curve.episodes.append(float(spent_episodes))
            curve.returns.append(float(np.mean(ret)))
            curve.episode_returns.append([float(r) for r in ret])
            curve.latents.append(None if z is None else [float(v) for v in z.reshape(-1)])
