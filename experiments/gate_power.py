"""How often would the safe gate's duel certify the gains ungated LoLA found? (docs/adaptation.md)

    python experiments/gate_power.py results/strong-walker-fb results/strong-metamotivo-walker-fb

For each task and budget, the per-start-state paired differences between the ungated method's latent
and z_r on the grid's evaluation episodes (all seeds pooled) stand for the gains a duel would draw. The
chance that a duel of n start states switches is the chance that the one-sided Student-t lower bound at
the gate's confidence, over n differences drawn from those, is above zero (20,000 draws).
"""

from __future__ import annotations

import argparse
import collections
import csv
from pathlib import Path

import numpy as np
from scipy import stats


def returns_by_point(grid: Path, method: str) -> dict[tuple, dict[int, float]]:
    """(model folder name, task, seed, episodes spent) -> {evaluation start index: return} of ``method``
    in a grid's ``episodes.csv``."""
    returns = collections.defaultdict(dict)
    with open(grid / "episodes.csv", newline="") as f:
        for row in csv.DictReader(f):
            if row["method"] == method:
                returns[(Path(row["model"]).name, row["task"], int(row["seed"]), float(row["episodes"]))][int(row["start"])] = float(row["return"])
    return returns


def switch_chance(differences: np.ndarray, pairs: int, confidence: float, rng: np.random.Generator, draws: int = 20_000) -> float:
    x = rng.choice(differences, (draws, pairs))
    bound = x.mean(1) - stats.t.ppf(confidence, pairs - 1) * x.std(1, ddof=1) / np.sqrt(pairs)
    return float(np.mean(bound > 0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("grids", nargs="+", type=Path)
    parser.add_argument("--method", default="lola-unsafe")
    parser.add_argument("--confidence", type=float, default=0.95)
    parser.add_argument("--pairs", type=int, nargs="+", default=[4, 6, 16])
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print("| model | task | episodes | mean gain | sd of paired gains | " + " | ".join(f"P(switch), {n} pairs" for n in args.pairs) + " |")
    print("|---|---|---|---|---|" + "---|" * len(args.pairs))
    for grid in args.grids:
        returns = returns_by_point(grid, args.method)
        for model, task in sorted({k[:2] for k in returns}):
            seeds = sorted({k[2] for k in returns if k[:2] == (model, task)})
            for episodes in sorted({k[3] for k in returns if k[:2] == (model, task)} - {0.0}):
                gains = np.concatenate([[returns[(model, task, s, episodes)][j] - returns[(model, task, s, 0.0)][j]
                                         for j in sorted(returns[(model, task, s, 0.0)])] for s in seeds])
                chances = " | ".join(f"{switch_chance(gains, n, args.confidence, rng):.2f}" for n in args.pairs)
                print(f"| {model} | {task.split(':')[-1]} | {episodes:g} | {gains.mean():+.1f} | {gains.std(ddof=1):.1f} | {chances} |")


if __name__ == "__main__":
    main()
