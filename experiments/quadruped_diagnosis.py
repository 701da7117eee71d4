"""Why FB fails on the quadruped: start states, data coverage and observation scales, measured.

    python experiments/quadruped_diagnosis.py starts [--episodes 500]
    python experiments/quadruped_diagnosis.py coverage --domain quadruped --data data/quadruped/explore
    python experiments/quadruped_diagnosis.py scales --data data/quadruped/explore
    python experiments/quadruped_diagnosis.py righting --episodes 200

``starts``: evaluation's start states (dm_control's uniformly random orientation) and a uniform-random
policy's returns on the four tasks by start type. ``coverage``: the share of dataset samples (and of a
random policy's states) that are upright, torso height and velocity quantiles, and per task the share of
samples with reward > 0.5. ``scales``: per-dimension scale of the observations and how far evaluation
states lie outside the training data after the models' normalisation. ``righting``: from the
upside-down landings among ``--episodes`` resets, whether six families of random actions (uniform per
step, uniform or bang-bang held ~10 steps, left/right leg synergies, all legs alike, sinusoids) reach
upright within 5 s. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from fastbfm.data.dataset import load_dataset
from fastbfm.data.relabel import relabel
from fastbfm.envs.batch import BatchedEnv
from fastbfm.envs.registry import Task, get_domain

# Quadruped observation layout (fastbfm.envs.quadruped.observe): 16 hinge angles, 16 hinge velocities,
# 12 actuator activations, velocimeter (3), torso upright (1), IMU (6), arcsinh toe force-torque (24).
QUAD_GROUPS = {"hinge qpos": (0, 16), "hinge qvel": (16, 32), "act": (32, 44), "velocimeter": (44, 47),
               "upright": (47, 48), "gyro": (48, 51), "accelerometer": (51, 54), "force-torque": (54, 78)}
UPRIGHT, FORWARD = 47, 44
UPRIGHT_ZZ = 0.9  # torso z axis within ~25 degrees of vertical
UPSIDE_DOWN_ZZ = -0.5


def com_height_task() -> Task:
    from fastbfm.envs.quadruped import COM_HEIGHT

    return Task("quadruped", "com_height", lambda f: np.asarray(f.sensordata)[..., COM_HEIGHT].copy(), "centre-of-mass height")


def quantiles(x: np.ndarray) -> dict:
    return {q: round(float(v), 3) for q, v in zip(("p1", "p10", "p50", "p90", "p99"), np.quantile(x, [0.01, 0.1, 0.5, 0.9, 0.99]))}


def random_rollout(domain_name: str, episodes: int, seed: int, hold: float = 1.0) -> dict:
    """Uniform random actions (held for a geometric number of steps with mean ``hold``) from the domain's
    own reset: per-step observations, physics states and per-task rewards, and each episode's returns."""
    domain = get_domain(domain_name)
    rng = np.random.default_rng([seed, 104729])
    env = BatchedEnv(domain, num_envs=episodes)
    starts = domain.sample_initial_state(np.random.default_rng([seed, 7919]), episodes)
    obs = [env.set_state(starts)]
    tasks = list(domain.tasks.values())
    rewards = {t.full_name: [] for t in tasks}
    states = []
    action = rng.uniform(-1, 1, (episodes, domain.action_dim))
    for _ in range(domain.episode_length):
        switch = rng.random(episodes) < 1.0 / hold
        action[switch] = rng.uniform(-1, 1, (int(switch.sum()), domain.action_dim))
        o, _ = env.step(action)
        obs.append(o)
        states.append(env.get_state())
        for t in tasks:
            rewards[t.full_name].append(env.rewards(t))
    return {"obs": np.stack(obs), "states": np.stack(states), "rewards": {k: np.stack(v) for k, v in rewards.items()}}


def starts_report(episodes: int, seed: int, hold: float = 1.0) -> dict:
    """Start orientation, where the body settles, and random-policy returns by start type (quadruped)."""
    roll = random_rollout("quadruped", episodes, seed, hold)
    up0 = roll["obs"][0, :, UPRIGHT]
    up_settled = roll["obs"][50, :, UPRIGHT]  # 1 s after the drop, random actions
    up_frac = (roll["obs"][1:, :, UPRIGHT] > UPRIGHT_ZZ).mean(0)
    returns = {k: v.sum(0) for k, v in roll["rewards"].items()}
    kinds = {
        "starts upright (zz > 0.9)": up0 > UPRIGHT_ZZ,
        "starts zz in [0, 0.9]": (up0 >= 0) & (up0 <= UPRIGHT_ZZ),
        "starts zz < 0": up0 < 0,
        "settled upright at 1 s": up_settled > UPRIGHT_ZZ,
        "settled upside down at 1 s (zz < -0.5)": up_settled < UPSIDE_DOWN_ZZ,
        "settled on its side at 1 s": (up_settled >= UPSIDE_DOWN_ZZ) & (up_settled <= UPRIGHT_ZZ),
    }
    by_kind = {
        name: {"share": round(float(mask.mean()), 3), **{k: round(float(v[mask].mean()), 1) if mask.any() else None for k, v in returns.items()}}
        for name, mask in kinds.items()
    }
    ever_flipped = ((up_settled < 0) & (roll["obs"][51:, :, UPRIGHT] > UPRIGHT_ZZ).any(0)).sum()
    return {
        "episodes": episodes,
        "seed": seed,
        "action hold (mean steps)": hold,
        "start zz quantiles": quantiles(up0),
        "settled zz quantiles (1 s)": quantiles(up_settled),
        "time upright per episode (zz > 0.9)": quantiles(up_frac),
        "episodes settled zz<0 that reach zz>0.9 later": int(ever_flipped),
        "random returns (mean)": {k: round(float(v.mean()), 1) for k, v in returns.items()},
        "by start type": by_kind,
    }


def state_stats(domain_name: str, obs: np.ndarray, physics: np.ndarray, action: np.ndarray) -> dict:
    domain = get_domain(domain_name)
    features = domain.exploration_features(obs)
    out = {name: quantiles(features[:, i]) for i, name in enumerate(domain.exploration_names)}
    if domain_name == "quadruped":
        up = obs[:, UPRIGHT]
        out["share upright (zz > 0.9)"] = round(float((up > UPRIGHT_ZZ).mean()), 3)
        out["share upside down (zz < -0.5)"] = round(float((up < UPSIDE_DOWN_ZZ).mean()), 3)
        out["com height"] = quantiles(relabel(com_height_task(), physics, action))
        moving = (up > UPRIGHT_ZZ) & (obs[:, FORWARD] > 0.5)
        out["share upright and forward > 0.5 m/s"] = round(float(moving.mean()), 4)
    tasks = {}
    for t in domain.tasks.values():
        r = relabel(t, physics, action)
        tasks[t.full_name] = {"mean": round(float(r.mean()), 3), "share > 0.5": round(float((r > 0.5).mean()), 4), "max": round(float(r.max()), 3)}
    out["tasks"] = tasks
    return out


def flips(obs_segments: np.ndarray) -> dict:
    """Of segments (T, N) of upright values, the share that go from upside down to upright or back."""
    up = obs_segments
    righted = ((up[0] < 0) & (up[1:] > UPRIGHT_ZZ).any(0)).mean()
    fell = ((up[0] > UPRIGHT_ZZ) & (up[1:] < 0).any(0)).mean()
    return {"segments starting zz<0 that reach zz>0.9": round(float(righted), 4), "segments starting zz>0.9 that reach zz<0": round(float(fell), 4)}


def load_subset(data: str, files: int, seed: int):
    """A dataset of ``files`` stored episodes drawn at random (a uniform sample of the collection that
    fits in memory beside other work)."""
    from fastbfm.data.dataset import episode_files

    paths = episode_files(data)
    if files >= len(paths):
        return load_dataset(data)
    with tempfile.TemporaryDirectory() as tmp:
        pick = np.sort(np.random.default_rng([seed, 3]).choice(len(paths), size=files, replace=False))
        for i, j in enumerate(pick):
            os.symlink(Path(paths[j]).resolve(), Path(tmp) / f"episode_{i:06d}_{Path(paths[j]).name.split('_', 2)[-1]}")
        return load_dataset(tmp)


def coverage_report(domain_name: str, data: str, samples: int, episodes: int, seed: int, files: int) -> dict:
    ds = load_subset(data, files, seed)
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(ds), size=min(samples, len(ds)), replace=False))
    report = {"dataset": data, "stored episodes read (random subset)": ds.num_episodes, "transitions read": len(ds), "samples": len(idx)}
    report["dataset states"] = state_stats(domain_name, ds.next_obs[idx], ds.next_physics[idx], ds.action[idx])
    roll = random_rollout(domain_name, episodes, seed)
    T, N = roll["states"].shape[:2]
    pick = rng.choice(T * N, size=min(samples, T * N), replace=False)
    obs = roll["obs"][1:].reshape(T * N, -1)[pick]
    phys = roll["states"].reshape(T * N, -1)[pick]
    report[f"random policy states ({episodes} episodes from resets)"] = state_stats(domain_name, obs, phys, np.zeros((len(pick), get_domain(domain_name).action_dim)))
    if domain_name == "quadruped":
        starts = first_observations(ds)
        report["dataset episode starts"] = {
            "share upright (zz > 0.9)": round(float((starts[:, UPRIGHT] > UPRIGHT_ZZ).mean()), 3),
            "share upside down (zz < -0.5)": round(float((starts[:, UPRIGHT] < UPSIDE_DOWN_ZZ).mean()), 3),
            "zz quantiles": quantiles(starts[:, UPRIGHT]),
        }
        report["dataset flips (per stored segment)"] = flips(segments(ds, UPRIGHT))
        up = roll["obs"][:, :, UPRIGHT]
        L = 25
        windows = np.concatenate([up[s : s + L + 1] for s in range(0, T - L, L)], axis=1)
        report["random policy flips (per 25-step window)"] = flips(windows)
    return report


def _starts(ds) -> np.ndarray:
    ends = np.unique(ds.episode_end)
    return np.concatenate([[0], ends[:-1]])


def first_observations(ds) -> np.ndarray:
    return ds.obs[_starts(ds)]


def segments(ds, dim: int) -> np.ndarray:
    """(L+1, episodes) of observation ``dim`` over each stored episode (all of one length)."""
    starts = _starts(ds)
    L = int(np.unique(ds.episode_end)[0])
    seg = np.stack([ds.obs[starts + t, dim] for t in range(L)])
    return np.concatenate([seg, ds.next_obs[starts + L - 1, dim][None]])


def scales_report(data: str, episodes: int, seed: int) -> dict:
    ds = load_dataset(data)
    mean, std = ds.obs.mean(0), ds.obs.std(0)
    roll = random_rollout("quadruped", episodes, seed)
    z = np.abs((roll["obs"].reshape(-1, ds.obs.shape[1]) - mean) / np.maximum(std, 1e-6))
    groups = {}
    for name, (a, b) in QUAD_GROUPS.items():
        groups[name] = {
            "dataset std (min..max)": [round(float(std[a:b].min()), 3), round(float(std[a:b].max()), 3)],
            "dataset |x| p99.9": round(float(np.quantile(np.abs(ds.obs[:, a:b]), 0.999)), 2),
            "random-policy states, normalised |x| p99.9": round(float(np.quantile(z[:, a:b], 0.999)), 2),
            "random-policy states, normalised |x| max": round(float(z[:, a:b].max()), 1),
        }
    return {"dataset": data, "by group": groups}


LEFT_LEGS, RIGHT_LEGS = np.array([0, 1, 2, 9, 10, 11]), np.array([3, 4, 5, 6, 7, 8])
FAMILIES = ("uniform per step", "uniform held", "bang-bang held", "left/right synergies held", "all legs alike held", "sinusoids")


def righting_report(episodes: int, seed: int, steps: int = 250, hold: float = 10.0) -> dict:
    domain = get_domain("quadruped")
    env = BatchedEnv(domain, num_envs=episodes)
    env.set_state(domain.sample_initial_state(np.random.default_rng([seed, 11]), episodes))
    for _ in range(60):
        obs, _ = env.step(np.zeros((episodes, domain.action_dim)))
    down = env.get_state()[obs[:, UPRIGHT] < UPSIDE_DOWN_ZZ]
    n = len(down)
    env = BatchedEnv(domain, num_envs=n)
    out = {"resets": episodes, "upside down after 1.2 s": n, "steps tried": steps}
    for family in FAMILIES:
        rng = np.random.default_rng([seed, 1])
        obs = env.set_state(down)
        ever = np.zeros(n, bool)
        action = np.zeros((n, 12))
        phase, freq, amp = rng.uniform(0, 2 * np.pi, (n, 12)), rng.uniform(0.5, 3, (n, 1)), rng.uniform(0.3, 1, (n, 12))
        for t in range(steps):
            switch = (rng.random(n) < 1.0 / hold) | (t == 0)
            k = int(switch.sum())
            if family == "uniform per step":
                action = rng.uniform(-1, 1, (n, 12))
            elif family == "uniform held":
                action[switch] = rng.uniform(-1, 1, (k, 12))
            elif family == "bang-bang held":
                action[switch] = rng.choice([-1.0, 1.0], (k, 12))
            elif family == "left/right synergies held":
                action[np.ix_(switch, LEFT_LEGS)] = np.tile(rng.uniform(-1, 1, (k, 3)), 2)
                action[np.ix_(switch, RIGHT_LEGS)] = np.tile(rng.uniform(-1, 1, (k, 3)), 2)
            elif family == "all legs alike held":
                action[switch] = np.tile(rng.uniform(-1, 1, (k, 3)), 4)
            else:
                action = amp * np.sin(2 * np.pi * freq * t * 0.02 + phase)
            obs, _ = env.step(np.clip(action, -1, 1))
            ever |= obs[:, UPRIGHT] > UPRIGHT_ZZ
        out[family] = {"share ever upright": round(float(ever.mean()), 4), "share upright at the end": round(float((obs[:, UPRIGHT] > UPRIGHT_ZZ).mean()), 4)}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", choices=["starts", "coverage", "scales", "righting"])
    p.add_argument("--domain", default="quadruped")
    p.add_argument("--data", default="data/quadruped/explore")
    p.add_argument("--episodes", type=int, default=200)
    p.add_argument("--samples", type=int, default=50_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--files", type=int, default=8000, help="stored episodes read for coverage (at random)")
    p.add_argument("--hold", type=float, default=1.0, help="random actions held for this many steps on average")
    a = p.parse_args()
    if a.what == "starts":
        out = starts_report(a.episodes, a.seed, a.hold)
    elif a.what == "righting":
        out = righting_report(a.episodes, a.seed)
    elif a.what == "coverage":
        out = coverage_report(a.domain, a.data, a.samples, a.episodes, a.seed, a.files)
    else:
        out = scales_report(a.data, a.episodes, a.seed)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
