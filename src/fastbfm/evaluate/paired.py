"""Dips measured honestly: each point of an adaptation curve against zero-shot on the same start states.

Evaluation is deterministic given its start states (deterministic actions, seeded resets), so the noise of
an evaluated return is the sampling of the start states. Every point of a curve is evaluated on its seed's
fixed start states, zero-shot too, so a point and zero-shot pair up episode by episode. The statistic of a
point is the paired difference ``mean_seeds mean_episodes (R_point - R_zero_shot)``, and its confidence
interval a bootstrap over start states: each seed's episodes resampled with replacement (stratified by
seed; the adaptation runs themselves are held fixed, so the interval is about the evaluation's noise, not
about how another adaptation seed would have done). A point **dips** only when its whole interval lies
below zero; it **improves** when the whole interval lies above zero.
"""

from __future__ import annotations

import numpy as np

CONFIDENCE = 0.95
RESAMPLES = 4000


def paired_interval(
    returns: np.ndarray, reference: np.ndarray, confidence: float = CONFIDENCE, resamples: int = RESAMPLES, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Paired differences of points against a reference on the same start states.

    ``returns`` (seeds, points, episodes), ``reference`` (seeds, episodes) -> the mean difference of each
    point (points,) and the bounds of its two-sided ``confidence`` interval (percentile bootstrap over the
    episodes of each seed, ``resamples`` draws), each (points,). One episode per seed gives a zero-width
    interval: there is nothing to resample."""
    returns, reference = np.asarray(returns, float), np.asarray(reference, float)
    if returns.ndim != 3 or reference.shape != (returns.shape[0], returns.shape[2]):
        raise ValueError(f"returns (seeds, points, episodes) and reference (seeds, episodes) disagree: {returns.shape} vs {reference.shape}")
    diff = returns - reference[:, None, :]  # (S, P, E)
    S, P, E = diff.shape
    mean = diff.mean((0, 2))
    rng = np.random.default_rng(seed)
    boot = np.zeros((resamples, P))
    for s in range(S):  # each seed's episodes resampled on their own: (P, resamples) draws of its mean
        boot += diff[s][:, rng.integers(0, E, size=(resamples, E))].mean(-1).T
    boot /= S
    alpha = (1 - confidence) / 2
    low, high = np.quantile(boot, [alpha, 1 - alpha], axis=0)
    return mean, low, high


def paired_curve(episode_returns: np.ndarray, confidence: float = CONFIDENCE) -> dict:
    """The paired statistic of a run's curves against their own first point (zero-shot for the methods that
    start from z_r): ``episode_returns`` (seeds, points, episodes) -> per point the mean difference, its
    interval, and whether it dips (interval below zero) or improves (above zero)."""
    returns = np.asarray(episode_returns, float)
    mean, low, high = paired_interval(returns, returns[:, 0], confidence)
    return {"confidence": confidence, "difference": mean.tolist(), "low": low.tolist(), "high": high.tolist(),
            "dips": [bool(h < 0) for h in high], "improves": [bool(lo > 0) for lo in low]}
