"""LoLA: lookahead latent adaptation (Sikchi et al., RLC 2025), reset-to-start-state form.

A Gaussian N(mu, sigma^2 I) over latents, mu starting at the zero-shot z_r; the networks stay frozen.
Each iteration draws a start state s0 from the task's reset distribution, rolls k latents
z_i = project(mu + sigma eps_i) out from that same s0 for H steps (k copies of the simulation in one
batch), scores each with the frozen critic as bootstrap,

    R_i = sum_{t<H} gamma^t r_t + gamma^H psi(s_H, pi(s_H, z_i), z_i)^T w_r,

(w_r: the reward's unprojected embedding, so the bootstrap is in the reward's units), and takes an Adam
ascent step on mu with the leave-one-out REINFORCE estimate mean_i (R_i - mean_{j!=i} R_j) eps_i / sigma,
then re-projects mu. After every iteration the current mu is evaluated on fixed seeded episodes.

Reset-free form (``reset_free=True``, method ``lola-reset-free``): the lookahead rollouts continue an
ongoing episode instead of restarting from the reset distribution. The k candidates of an iteration all
branch (by simulator state restore) from the state where the *first* candidate of the previous iteration
ended: a draw from the current search distribution, so the visited states follow the current policy
without the selection bias that continuing from the best candidate would add. The environment is reset
only at episode boundaries, when that chain of segments reaches episode_length steps; a last segment
shorter than H (when H does not divide the episode) is bootstrapped after its own length.
The budget is the same: k segments of H steps per iteration.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from fastbfm.adapt.curve import AdaptationCurve, CurveRecorder
from fastbfm.adapt.zero_shot import TaskPrompt
from fastbfm.bfm.protocol import BFM
from fastbfm.envs.batch import BatchedEnv
from fastbfm.envs.registry import Task, get_domain
from fastbfm.errors import FastBFMError
from fastbfm.evaluate.rollout import SeedEvaluator


@dataclass(frozen=True)
class LoLAConfig:
    episodes: int = 20
    """Adaptation budget in episodes of the task (episode_length environment steps each)."""
    num_candidates: int = 4
    horizon: int = 250
    sigma: float = 0.1
    """Std of the latent perturbation per coordinate; latents have norm sqrt(d), so about the relative noise."""
    lr: float = 0.02
    discount: float | None = None
    """Discount of the lookahead and bootstrap; default: the one the model was trained with (its
    successor features are sums discounted by it), else 0.99."""
    pessimism: float = 0.5
    reset_free: bool = False
    """Continue from where the previous lookahead ended; reset only at episode boundaries."""
    eval_episodes: int = 10
    eval_every: float = 0.0
    """Evaluate after every iteration (0) or every this many episodes of budget."""
    seed: int = 0

    def __post_init__(self):
        if self.num_candidates < 2:
            raise FastBFMError("LoLA needs at least 2 candidates for its leave-one-out baseline")
        if self.horizon < 1 or self.episodes < 0 or self.sigma <= 0 or self.lr <= 0 or self.eval_episodes < 1:
            raise FastBFMError("LoLA needs horizon >= 1, episodes >= 0, sigma > 0, lr > 0 and eval_episodes >= 1")


def model_discount(model: BFM, default: float = 0.99) -> float:
    return float(getattr(model, "meta", {}).get("train", {}).get("discount", default))


def leave_one_out_gradient(scores: np.ndarray, eps: torch.Tensor, sigma: float) -> torch.Tensor:
    """LoLA's ascent direction on mu, ``mean_i (R_i - mean_{j!=i} R_j) eps_i / sigma``: scores (..., k) of
    the latents mu + sigma eps_i, eps (..., k, d) -> (..., d). The baseline of each candidate leaves it out,
    so the estimate of the gradient of E[R(mu + sigma eps)] stays unbiased."""
    k = scores.shape[-1]
    advantages = torch.from_numpy(scores - (scores.sum(-1, keepdims=True) - scores) / (k - 1)).float()
    return (advantages.unsqueeze(-1) * eps).mean(-2) / sigma


def lookahead_scores(
    model: BFM, env: BatchedEnv, starts: np.ndarray, z: torch.Tensor, w: torch.Tensor, horizon: int, gamma: float, pessimism: float
) -> np.ndarray:
    """LoLA's score of each latent z_i from ``starts[i]``: ``horizon`` simulated steps of pi(., z_i), then the
    frozen critic as bootstrap, sum_{t<H} gamma^t r_t + gamma^H psi(s_H, pi(s_H, z_i), z_i)^T w_i. The
    simulations are left at s_H (the reset-free form continues from there)."""
    obs = env.set_state(starts)
    scores, discounts = np.zeros(env.num_envs), gamma ** np.arange(horizon)
    for t in range(horizon):
        obs, reward = env.step(model.act(torch.from_numpy(obs), z, mean=True).numpy())
        scores += discounts[t] * reward
    last = torch.from_numpy(obs)
    return scores + gamma**horizon * model.q_value(last, model.act(last, z, mean=True), z, w, pessimism).numpy()


def lola(model: BFM, task: Task, prompt: TaskPrompt, config: LoLAConfig = LoLAConfig(), progress: bool = False) -> AdaptationCurve:
    """One LoLA run with ``config.seed``."""
    return lola_seeds(model, task, prompt, config, [config.seed], progress)[0]


@torch.inference_mode()
def lola_seeds(
    model: BFM, task: Task, prompt: TaskPrompt, config: LoLAConfig, seeds: list[int], progress: bool = False
) -> list[AdaptationCurve]:
    """Independent LoLA runs, one per seed, stepped in lockstep so that all their simulations share one
    batch and one policy call per step. Each run equals a lone run with that seed: its own start states,
    noise and Adam state (Adam is elementwise, so one optimiser over the (seeds, d) means is S optimisers).
    """
    domain = get_domain(task.domain)
    S, k, H, E = len(seeds), config.num_candidates, min(config.horizon, domain.episode_length), config.eval_episodes
    T = domain.episode_length
    budget = config.episodes * T
    rngs = [np.random.default_rng([seed, 1]) for seed in seeds]
    generators = [torch.Generator().manual_seed(seed) for seed in seeds]
    env = BatchedEnv(task, num_envs=S * k)
    evaluate = SeedEvaluator(model, task, seeds, E)
    w = prompt.w.expand(S * k, -1)
    with torch.enable_grad():
        mu = torch.nn.Parameter(prompt.z.expand(S, -1).clone())
        optimizer = torch.optim.Adam([mu], lr=config.lr)
    gamma = model_discount(model) if config.discount is None else config.discount
    chain, chain_t = None, 0  # reset-free: each seed's ongoing state and its time in the episode

    recorder = CurveRecorder(config.eval_every, evaluate(mu.detach()))
    compute, spent, it = 0.0, 0, 0
    name = "lola-reset-free" if config.reset_free else "lola"
    bar = tqdm(total=budget // (k * H), desc=f"{name} {task.full_name}", disable=not progress)
    while True:
        segment = min(H, T - chain_t) if config.reset_free else H
        if spent + k * segment > budget:
            break
        start = time.perf_counter()
        eps = torch.stack([torch.randn(k, model.z_dim, generator=g) for g in generators])
        z = model.project(mu.detach().unsqueeze(1) + config.sigma * eps).reshape(S * k, -1)
        if chain_t == 0:  # always, unless reset-free mid-episode
            chain = np.concatenate([domain.sample_initial_state(rng, 1) for rng in rngs])
        scores = lookahead_scores(model, env, np.repeat(chain, k, axis=0), z, w, segment, gamma, config.pessimism)
        if config.reset_free:
            chain, chain_t = env.get_state()[::k].copy(), (chain_t + segment) % T
        spent += k * segment
        if not np.isfinite(scores).all():
            raise FastBFMError(f"LoLA on {task.full_name}: non-finite scores at iteration {it}")
        scores = scores.reshape(S, k)
        with torch.enable_grad():
            optimizer.zero_grad()
            mu.grad = -leave_one_out_gradient(scores, eps, config.sigma)
            optimizer.step()
            mu.data = model.project(mu.data)
        compute += time.perf_counter() - start
        recorder.step(spent / T, lambda: evaluate(mu.detach()))
        it += 1
        bar.update()
    bar.close()
    curves = recorder.finish(spent / T, lambda: evaluate(mu.detach()), compute, env.sim_seconds)
    for curve, z_final in zip(curves, mu.detach()):
        curve.z = z_final.clone()
    return curves
