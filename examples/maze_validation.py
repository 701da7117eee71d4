"""Choose among maze checkpoints without touching the test tasks: mean zero-shot return over 16 held-out
goals (ExORL's multi-goal positions other than the four reach targets), 10 episodes each.

    python examples/maze_validation.py maze-fb runs/my-maze-fb [more checkpoint folders]
"""

import itertools
import json
import sys

import numpy as np
import torch

from fastbfm.adapt.zero_shot import infer_task
from fastbfm.data import ensure_dataset
from fastbfm.envs import Task
from fastbfm.envs.point_mass_maze import reach_reward
from fastbfm.models import load_model
from fastbfm.rollout import evaluate_latent

OFFSETS = [(0.22, 0.22), (0.08, 0.08), (0.22, 0.08), (0.08, 0.22)]
GOALS = [(sx * a, sy * b) for sx, sy in itertools.product((-1, 1), (-1, 1)) for a, b in OFFSETS]


def main(models: list[str]) -> None:
    torch.set_num_threads(1)
    dataset = ensure_dataset("point_mass_maze", progress=False)
    for name in models:
        model = load_model(name)
        returns = []
        for x, y in GOALS:
            task = Task("point_mass_maze", f"heldout_{x}_{y}", reach_reward((x, y)))
            prompt = infer_task(model, task, dataset, seed=1)
            returns.append(float(evaluate_latent(model, task, prompt.z, episodes=10, seed=1).mean()))
        print(json.dumps({"model": name, "updates": model.meta.get("updates"), "heldout_mean": round(float(np.mean(returns)), 1),
                          "per_goal": [round(r) for r in returns]}))


if __name__ == "__main__":
    main(sys.argv[1:] or ["maze-fb"])
