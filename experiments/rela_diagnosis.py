"""ReLA's dip on locomotion, measured episode by episode (docs/adaptation.md, "ReLA's dip").

    python experiments/rela_diagnosis.py walker-fb walker:walk --episodes 8
    python experiments/rela_diagnosis.py ../shared/models/metamotivo-walker-fb walker:walk --discount 0.98

One ungated ReLA run (seed 0, the latent the method itself learns). After every episode the current
latent plays 8 evaluation start states; at their states at t = 0, 250 and 500 the frozen critic's value
psi(s, pi(s, z), z)^T w_r and the residual critic's correction are printed beside the discounted return
the policy actually earned from there (Monte Carlo, the model's discount), with the latent's drift
|z - z_r| / |z_r|. Prints JSON lines.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from fastbfm.adapt.adapter import _rollout
from fastbfm.adapt.rela import ReLA, ReLAConfig
from fastbfm.adapt.zero_shot import infer_task
from fastbfm.data import ensure_dataset
from fastbfm.envs import get_task
from fastbfm.envs.batch import BatchedEnv
from fastbfm.envs.registry import get_domain
from fastbfm.models import load_model
from fastbfm.rollout import eval_start_states

TIMES = (0, 250, 500)


def measure(adapter: ReLA, env: BatchedEnv, starts: np.ndarray, length: int) -> dict:
    model, n = adapter.model, len(starts)
    z = adapter.current_latent().expand(n, -1)
    obs = env.set_state(starts)
    states, rewards = [obs], []
    with torch.no_grad():
        for _ in range(length):
            obs, r = env.step(model.act(torch.from_numpy(obs), z, mean=True).numpy())
            states.append(obs)
            rewards.append(r)
    rewards = np.array(rewards)
    to_go, acc = np.zeros_like(rewards), np.zeros(n)
    for t in range(length - 1, -1, -1):
        acc = rewards[t] + adapter.gamma * acc
        to_go[t] = acc
    row = {"return": round(float(rewards.sum(0).mean()), 1)}
    with torch.no_grad():
        for t in TIMES:
            s = torch.from_numpy(states[t])
            a = model.act(s, z, mean=True)
            row[f"t{t}"] = {
                "frozen": round(float(adapter.bfm_q(s, a, z).mean()), 2),
                "residual": round(float(adapter.residual(adapter.critic, s, a, z).mean()), 2),
                "earned": round(float(to_go[t].mean()), 2),
            }
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("task")
    parser.add_argument("--episodes", type=int, default=8)
    parser.add_argument("--discount", type=float, default=None, help="for a Meta Motivo folder (the shared walker: 0.98)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model, task = load_model(args.model, discount=args.discount), get_task(args.task)
    domain = get_domain(task.domain)
    prompt = infer_task(model, task, ensure_dataset(task.domain))
    adapter = ReLA(model, prompt, ReLAConfig(episodes=args.episodes, safe=None), seed=0, episode_length=domain.episode_length)
    starts = eval_start_states(task, 8, seed=0)
    eval_env, env = BatchedEnv(task, num_envs=len(starts)), BatchedEnv(task, num_envs=1)
    z_r = adapter.current_latent().clone()
    print(json.dumps({"episode": 0, "drift": 0.0, **measure(adapter, eval_env, starts, domain.episode_length)}), flush=True)
    for episode in range(1, args.episodes + 1):
        with torch.inference_mode():
            obs, actions, rewards = _rollout([adapter], env, domain, domain.episode_length, None)
        adapter.observe(obs[:-1], actions, rewards, obs[1:])
        adapter.update()
        drift = float((adapter.current_latent() - z_r).norm() / z_r.norm())
        print(json.dumps({"episode": episode, "drift": round(drift, 3), **measure(adapter, eval_env, starts, domain.episode_length)}), flush=True)


if __name__ == "__main__":
    main()
