"""How well does a lookahead's score rank latents by their episode return? (README, "LoLA")

    PYTHONPATH=examples python experiments/score_probe.py ../shared/models/metamotivo-walker-fb walker:my_rewards:walk_backward --discount 0.98

Latents drawn as the headroom oracle draws them (z_r, then noise scales 0.1 / 0.2 / 0.4 / 0.8 around it and
a fifth on the sphere) play full episodes from the same start states. For each start state, the Spearman
correlation across latents between a score of the first H steps and the episode's return from that
start: the paper's discounted score (rewards discounted by the model's gamma plus gamma^H times the
critic), and estimates of the undiscounted return (the H rewards plus the remaining steps at a reward
rate: the last 50 rewards', the critic's (1 - gamma) psi^T w, or their mean, LoLA's default).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from scipy.stats import spearmanr

from fastbfm.adapt.oracle import OracleConfig, candidate_latents
from fastbfm.adapt.zero_shot import infer_task
from fastbfm.data import ensure_dataset
from fastbfm.envs import get_task
from fastbfm.envs.batch import BatchedEnv
from fastbfm.envs.registry import get_domain
from fastbfm.models import load_model

HORIZONS = (100, 250, 500)
WINDOW = 50


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("task")
    parser.add_argument("--discount", type=float, default=None, help="for a Meta Motivo folder (the shared walker: 0.98)")
    parser.add_argument("--latents", type=int, default=256)
    parser.add_argument("--starts", type=int, default=3)
    parser.add_argument("--data", default=None, help="dataset for z_r (default: the domain's exploration data)")
    args = parser.parse_args()
    model, task = load_model(args.model, discount=args.discount), get_task(args.task)
    domain = get_domain(task.domain)
    prompt = infer_task(model, task, ensure_dataset(task.domain, args.data))
    gamma, n, s, length = model.discount, args.latents, args.starts, domain.episode_length
    latents = candidate_latents(model, prompt.z, OracleConfig(num_latents=n - 1, sigmas=(0.1, 0.2, 0.4, 0.8), sphere_fraction=0.2),
                                torch.Generator().manual_seed(7))
    env = BatchedEnv(task, num_envs=n * s)
    obs = env.set_state(np.repeat(domain.sample_initial_state(np.random.default_rng(7), s), n, axis=0))
    z, w = latents.repeat(s, 1), prompt.w.expand(n * s, -1)
    rewards, values = np.zeros((length, s, n)), {}
    with torch.no_grad():
        for t in range(length):
            o = torch.from_numpy(obs)
            a = model.act(o, z, mean=True)
            if t in HORIZONS:
                values[t] = model.q_value(o, a, z, w, 0.5).numpy().reshape(s, n)
            obs, r = env.step(a.numpy())
            rewards[t] = r.reshape(s, n)
    returns = rewards.sum(0)
    print(f"zero-shot {returns[:, 0].mean():.1f}, best latent {returns.mean(0).max():.1f} (mean over {s} start states)")
    for h in HORIZONS:
        head, critic_rate = rewards[:h].sum(0), (1 - gamma) * values[h]
        observed_rate = rewards[h - WINDOW:h].mean(0)
        scores = {
            "discounted": np.einsum("tsn,t->sn", rewards[:h], gamma ** np.arange(h)) + gamma**h * values[h],
            "return, observed rate": head + (length - h) * observed_rate,
            "return, critic's rate": head + (length - h) * critic_rate,
            "return, mean of both": head + (length - h) * (observed_rate + critic_rate) / 2,
        }
        for name, score in scores.items():
            rho = [spearmanr(score[i], returns[i])[0] for i in range(s)]
            print(f"H={h:4d} {name:22s} Spearman with the return, per start state: " + ", ".join(f"{r:.2f}" for r in rho))


if __name__ == "__main__":
    main()
