"""Adaptation curves as PNG."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def plot_adaptation_curves(
    curves: dict[str, list[tuple[list[float], list[float]]]], path: str | Path, title: str = "", method: str = "LoLA"
) -> Path:
    """``curves[task] = [(episodes, returns) per seed]``: mean and min-max band per task, zero-shot dashed."""
    tasks = list(curves)
    cols = min(len(tasks), 4)
    rows = -(-len(tasks) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.0 * rows), squeeze=False)
    for ax, task in zip(axes.flat, tasks):
        x = np.asarray(curves[task][0][0])
        ys = np.array([returns for _, returns in curves[task]])
        mean = ys.mean(0)
        ax.plot(x, mean, color="C0", label=f"{method} (mean of seeds)")
        ax.fill_between(x, ys.min(0), ys.max(0), color="C0", alpha=0.2, linewidth=0)
        ax.axhline(mean[0], color="gray", linestyle="--", label="zero-shot")
        # Returns lie in [0, episode length]: keep a readable scale when a curve is all (near) zero.
        ax.set_ylim(bottom=min(0.0, float(ys.min())), top=max(10.0, 1.05 * float(ys.max())))
        ax.set_title(task.split(":")[-1], fontsize=10)
        ax.set_xlabel("adaptation episodes")
        ax.set_ylabel("return")
    for ax in list(axes.flat)[len(tasks) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)


def save_figure(fig, path: str | Path) -> Path:
    """Tight layout, PNG at ``path`` (its folder created), figure closed."""
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
