"""The figures that compare explorers, from a dataset folder's episode files (finished or not):

    python experiments/explorer_figures.py data/quadruped/explore runs/rnd/quadruped [--window 25] [--samples 20000]

Per folder: transitions read; the share of states per torso orientation (quadruped); upside-down
stretches that reach upright, counted over windows of ``--window`` steps (the archive explorer's segment
length, so that folders of long and short episodes compare); the forward-velocity quantiles (walker,
cheetah: the exploration feature ``forward velocity``); and per built-in task the share of sampled
transitions with a reward above 0.5. Prints one JSON object per folder.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from fastbfm.data.dataset import episode_files, read_episode
from fastbfm.data.relabel import relabel
from fastbfm.envs.registry import domain_for_dims, get_domain


def figures(folder: Path, window: int, samples: int) -> dict:
    episodes = [read_episode(p) for p in episode_files(folder)]
    obs = [e["observation"] for e in episodes]
    domain = get_domain(domain_for_dims(obs[0].shape[1], episodes[0]["action"].shape[1]))
    out: dict = {"folder": str(folder), "domain": domain.name, "episodes": len(episodes), "transitions": sum(len(o) - 1 for o in obs)}
    states = np.concatenate([o[1:] for o in obs])
    if domain.partition is not None:
        out[domain.partition.name] = domain.partition.shares(states)
    if domain.name == "quadruped":
        from fastbfm.envs.quadruped import UPRIGHT_OBS

        down = reached = 0
        for o in obs:
            zz = o[:, UPRIGHT_OBS]
            for start in range(0, len(zz) - window, window):
                if zz[start] < -0.5:
                    down += 1
                    reached += bool((zz[start + 1 : start + window + 1] > 0.9).any())
        out[f"upside-down {window}-step windows"] = down
        out["of which reach upright"] = reached
    names = list(domain.exploration_names)
    if "forward velocity" in names:
        v = domain.exploration_features(states)[:, names.index("forward velocity")]
        out["forward velocity quantiles (1, 10, 50, 90, 99%)"] = [round(float(q), 3) for q in np.quantile(v, [0.01, 0.1, 0.5, 0.9, 0.99])]
    rng = np.random.default_rng(0)
    physics = np.concatenate([e["physics"][1:] for e in episodes])
    actions = np.concatenate([e["action"][1:] for e in episodes])
    idx = np.sort(rng.choice(len(physics), size=min(samples, len(physics)), replace=False))
    out["reward > 0.5"] = {t.name: round(float((relabel(t, physics[idx], actions[idx]) > 0.5).mean()), 4) for t in domain.tasks.values()}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folders", nargs="+", type=Path)
    p.add_argument("--window", type=int, default=25)
    p.add_argument("--samples", type=int, default=20_000)
    a = p.parse_args()
    for folder in a.folders:
        print(json.dumps(figures(folder, a.window, a.samples)), flush=True)


if __name__ == "__main__":
    main()
