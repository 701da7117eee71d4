"""Zero-shot on the quadruped by start type, and on held-out rewards used to choose checkpoints.

    python experiments/quadruped_eval.py MODEL [MODEL ...] --tasks heldout --episodes 50
    python experiments/quadruped_eval.py quadruped-fb --tasks standard --episodes 50

Every quadruped task rewards being upright (a random policy that lands on its feet scores ~1000 on
stand, ~500 on walk and run); so besides each mean return this reports the returns of episodes whose
start state lands upright or upside down when dropped with zero action, and the share of episodes
that end upright: whether the policy rights itself.

``heldout`` rewards are not among the 16 tasks and choose presets and checkpoints: ``backward``
(upright, moving backward at 0.5 m/s or faster), ``sideways`` (upright, moving left at 0.5 m/s or
faster) and ``crouch`` (upright with the centre of mass at most 0.25 m high). Prints JSON lines.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import torch

from fastbfm.adapt.zero_shot import infer_task
from fastbfm.models import load_model
from fastbfm.data.dataset import load_dataset
from fastbfm.envs.batch import BatchedEnv
from fastbfm.envs.quadruped import COM_HEIGHT, VELOCIMETER, upright
from fastbfm.envs.registry import Fields, Task, get_domain, get_task
from fastbfm.rollout import eval_start_states
from dm_control.utils import rewards as dm_rewards

UPRIGHT_OBS, UPRIGHT_ZZ = 47, 0.9


def _backward(f: Fields) -> np.ndarray:
    v = -np.asarray(f.sensordata)[..., VELOCIMETER.start]
    return upright(f) * dm_rewards.tolerance(v, bounds=(0.5, float("inf")), margin=0.5, value_at_margin=0.5, sigmoid="linear")


def _sideways(f: Fields) -> np.ndarray:
    v = np.asarray(f.sensordata)[..., VELOCIMETER.start + 1]
    return upright(f) * dm_rewards.tolerance(v, bounds=(0.5, float("inf")), margin=0.5, value_at_margin=0.5, sigmoid="linear")


def _crouch(f: Fields) -> np.ndarray:
    h = np.asarray(f.sensordata)[..., COM_HEIGHT]
    return upright(f) * dm_rewards.tolerance(h, bounds=(0.0, 0.25), margin=0.25, value_at_margin=0.1, sigmoid="linear")


HELDOUT = [
    Task("quadruped", "heldout_backward", _backward, "upright, backward at 0.5 m/s or faster"),
    Task("quadruped", "heldout_sideways", _sideways, "upright, leftward at 0.5 m/s or faster"),
    Task("quadruped", "heldout_crouch", _crouch, "upright, centre of mass at most 0.25 m high"),
]
STANDARD = [get_task(f"quadruped:{t}") for t in ("stand", "walk", "run", "jump")]


def landing(episodes: int, seed: int) -> np.ndarray:
    """Torso zz of each evaluation start after a 1 s drop with zero action: where the body lands."""
    env = BatchedEnv(get_domain("quadruped"), num_envs=episodes)
    env.set_state(eval_start_states(STANDARD[0], episodes, seed))
    obs = None
    for _ in range(50):
        obs, _ = env.step(np.zeros((episodes, 12)))
    return obs[:, UPRIGHT_OBS]


def rollout(task: Task, episodes: int, seed: int, policy) -> tuple[np.ndarray, np.ndarray]:
    """Returns and final torso zz of ``policy(obs) -> action`` from the evaluation starts."""
    env = BatchedEnv(task, num_envs=episodes)
    obs = env.set_state(eval_start_states(task, episodes, seed))
    returns = np.zeros(episodes)
    for _ in range(1000):
        obs, r = env.step(policy(obs))
        returns += r
    return returns, obs[:, UPRIGHT_OBS]


def summary(returns: np.ndarray, final_zz: np.ndarray, land: np.ndarray) -> dict:
    up, down = land > UPRIGHT_ZZ, land < 0
    return {
        "mean": round(float(returns.mean()), 1),
        "std": round(float(returns.std()), 1),
        "lands upright": round(float(returns[up].mean()), 1) if up.any() else None,
        "lands upside down": round(float(returns[down].mean()), 1) if down.any() else None,
        "ends upright": round(float((final_zz > UPRIGHT_ZZ).mean()), 3),
        "ends upright | lands upside down": round(float((final_zz[down] > UPRIGHT_ZZ).mean()), 3) if down.any() else None,
    }


@torch.inference_mode()
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="+")
    p.add_argument("--data", default="data/quadruped/explore")
    p.add_argument("--tasks", choices=["heldout", "standard", "all"], default="heldout")
    p.add_argument("--episodes", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-random", action="store_true", help="skip the random policy's rows")
    a = p.parse_args()
    torch.set_num_threads(1)
    tasks = {"heldout": HELDOUT, "standard": STANDARD, "all": STANDARD + HELDOUT}[a.tasks]
    dataset = load_dataset(a.data)
    land = landing(a.episodes, a.seed)
    print(json.dumps({"episodes": a.episodes, "land upright": float((land > UPRIGHT_ZZ).mean()), "land upside down": float((land < 0).mean())}), flush=True)
    if not a.no_random:
        for task in tasks:
            rng = np.random.default_rng([a.seed, 104729])
            ret, zz = rollout(task, a.episodes, a.seed, lambda obs: rng.uniform(-1, 1, (len(obs), 12)))
            print(json.dumps({"model": "random", "task": task.full_name, **summary(ret, zz, land)}), flush=True)
    for name in a.models:
        model = load_model(name)
        for task in tasks:
            z = infer_task(model, task, dataset, 50_000, a.seed).z.expand(a.episodes, -1)
            ret, zz = rollout(task, a.episodes, a.seed, lambda obs: model.act(torch.from_numpy(obs), z, mean=True).numpy())
            row = {"model": name, "updates": model.meta.get("updates"), "task": task.full_name, **summary(ret, zz, land)}
            print(json.dumps(row), flush=True)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
