"""Dataset cards: what a reward-free dataset covers, measured on the data itself.

``write_dataset_card(folder, domain)`` writes ``DATASET_CARD.md`` and ``coverage.png`` into the dataset
folder: histograms of the domain's exploration features (e.g. the walker's torso height and forward
velocity) and, per task of the domain, the reward statistics of relabelled samples, which say how much
of each task's rewarding region the data visits.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from fastbfm.data.dataset import TransitionDataset  # noqa: E402
from fastbfm.data.relabel import relabel  # noqa: E402
from fastbfm.envs.registry import get_domain  # noqa: E402
from fastbfm.io import atomic_write, write_text  # noqa: E402

CARD, PLOT = "DATASET_CARD.md", "coverage.png"


def coverage(dataset: TransitionDataset, domain_name: str, samples: int = 20_000, seed: int = 0) -> tuple[dict, np.ndarray]:
    """Feature quantiles and per-task reward statistics on ``samples`` random transitions."""
    domain = get_domain(domain_name)
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(dataset), size=min(samples, len(dataset)), replace=False))
    features = domain.exploration_features(dataset.next_obs[idx])
    stats = {
        "transitions": len(dataset),
        "episodes": dataset.num_episodes,
        "features": {
            name: {q: float(v) for q, v in zip(("p1", "p50", "p99"), np.quantile(features[:, i], [0.01, 0.5, 0.99]))}
            for i, name in enumerate(domain.exploration_names)
        },
        "tasks": {},
    }
    for task in domain.tasks.values():
        r = relabel(task, dataset.next_physics[idx], dataset.action[idx])
        stats["tasks"][task.full_name] = {"mean": float(r.mean()), "above_half": float((r > 0.5).mean()), "max": float(r.max())}
    if domain.partition is not None:
        stats[f"{domain.partition.name}_fractions"] = domain.partition.shares(dataset.next_obs)
    if domain.dataset_notes is not None and dataset.episode_end is not None:
        starts = np.concatenate([[0], np.unique(dataset.episode_end)[:-1]])
        stats["notes"] = domain.dataset_notes(dataset.obs, dataset.next_obs, starts)
    return stats, features


def write_dataset_card(folder: str | Path, dataset: TransitionDataset, domain_name: str, collect_info: dict | None = None) -> dict:
    folder = Path(folder)
    domain = get_domain(domain_name)
    stats, features = coverage(dataset, domain_name)
    k = features.shape[1]
    fig, axes = plt.subplots(1, k, figsize=(3.4 * k, 2.8), squeeze=False)
    for i, (ax, name) in enumerate(zip(axes[0], domain.exploration_names)):
        ax.hist(features[:, i], bins=60, color="C0")
        ax.set_title(name, fontsize=10)
        ax.set_yscale("log")
    fig.suptitle(f"{domain_name}: {len(dataset)} transitions (20k sampled)", fontsize=10)
    fig.tight_layout()
    atomic_write(folder / PLOT, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
    plt.close(fig)
    lines = [f"# Dataset: {domain_name}", "", f"{stats['transitions']} transitions in {stats['episodes']} episodes."]
    if collect_info:
        lines += ["", "Collection: " + ", ".join(f"{k} {v}" for k, v in collect_info.items())]
    lines += ["", "## Exploration features (quantiles over 20k samples)", "", "| feature | p1 | p50 | p99 |", "|---|---|---|---|"]
    lines += [f"| {name} | {q['p1']:.3g} | {q['p50']:.3g} | {q['p99']:.3g} |" for name, q in stats["features"].items()]
    lines += ["", f"![coverage]({PLOT})", "", "## Task rewards on relabelled samples", ""]
    lines += ["| task | mean reward | fraction > 0.5 | max |", "|---|---|---|---|"]
    lines += [f"| {t} | {v['mean']:.3f} | {v['above_half']:.3f} | {v['max']:.3f} |" for t, v in stats["tasks"].items()]
    if domain.partition is not None:
        shares = stats[f"{domain.partition.name}_fractions"]
        lines += ["", f"States per {domain.partition.name}: " + ", ".join(f"{k} {v:.2f}" for k, v in shares.items())]
    if stats.get("notes"):
        lines += ["", *stats["notes"]]
    write_text(folder / CARD, "\n".join(lines) + "\n")
    return stats
