"""Could the critic reduce the variance of the safe gate's duel? (docs/adaptation.md, "What the gate costs")

    python experiments/gate_covariate.py results/strong-walker-fb walker-fb
    python experiments/gate_covariate.py results/strong-metamotivo-walker-fb ../shared/models/metamotivo-walker-fb --discount 0.98

A control variate helps a paired test only if it correlates with the paired gain. For each task of the
grid, the final latent of each seed of ``--method`` against z_r: at each evaluation start state, the
frozen critic's predicted gain psi(s, pi(s, z), z)^T w_r - psi(s, pi(s, z_r), z_r)^T w_r (free: no
environment step) beside the realised gain of the two policies' episodes from that state; prints their
correlation over all seeds' start states.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from fastbfm.adapt.zero_shot import infer_task
from fastbfm.data import ensure_dataset
from fastbfm.envs import get_task
from fastbfm.envs.batch import BatchedEnv
from fastbfm.models import load_model
from fastbfm.rollout import eval_start_states
from gate_power import returns_by_point  # this folder's (run as a script)


def predicted_value(model, obs: torch.Tensor, z: torch.Tensor, w: torch.Tensor) -> np.ndarray:
    z, w = z.expand(len(obs), -1), w.expand(len(obs), -1)
    with torch.no_grad():
        return model.q_value(obs, model.act(obs, z, mean=True), z, w, 0.5).numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("grid", type=Path)
    parser.add_argument("model")
    parser.add_argument("--discount", type=float, default=None)
    parser.add_argument("--method", default="lola-unsafe")
    args = parser.parse_args()
    model = load_model(args.model, discount=args.discount)
    budget = json.loads((args.grid / "grid.json").read_text())["episodes"]
    returns = returns_by_point(args.grid, args.method)
    for result in json.loads((args.grid / "results.json").read_text())["results"]:
        if result["method"] != args.method:
            continue
        task = get_task(result["task"])
        prompt = infer_task(model, task, ensure_dataset(task.domain))
        realised, predicted = [], []
        for seed, z in zip(result["seeds"], result["z"]):
            key = (Path(result["model"]).name, result["task"], seed)
            final, start = returns[(*key, float(budget))], returns[(*key, 0.0)]
            starts = eval_start_states(task, len(start), seed)
            obs = torch.from_numpy(BatchedEnv(task, num_envs=len(starts)).set_state(starts))
            predicted += list(predicted_value(model, obs, torch.tensor(z), prompt.w) - predicted_value(model, obs, prompt.z, prompt.w))
            realised += [final[j] - start[j] for j in sorted(start)]
        print(f"{result['task']}: correlation of the critic's predicted gain with the paired gain {np.corrcoef(predicted, realised)[0, 1]:+.2f} "
              f"over {len(realised)} start states (mean gain {np.mean(realised):+.1f}, standard deviation {np.std(realised, ddof=1):.1f})")


if __name__ == "__main__":
    main()
