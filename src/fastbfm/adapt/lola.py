"""LoLA: lookahead latent adaptation (Sikchi et al., RLC 2025), reset-to-start-state form.

A Gaussian N(mu, sigma^2 I) over latents, mu starting at the zero-shot z_r; the networks stay frozen.
Each iteration draws a start state s0 from the task's reset distribution, rolls k latents
z_i = project(mu + sigma eps_i) out from that same s0 for H steps (k copies of the simulation in one
batch), scores each with the frozen critic as bootstrap,

    R_i = sum_{t<H} gamma^t r_t + gamma^H psi(s_H, pi(s_H, z_i), z_i)^T w_r,

(w_r: the reward's unprojected embedding, so the bootstrap is in the reward's units), and takes an Adam
ascent step on mu with the leave-one-out REINFORCE estimate mean_i (R_i - mean_{j!=i} R_j) eps_i / sigma,
then re-projects mu. After every iteration the current mu is evaluated on fixed seeded episodes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from fastbfm.adapt.zero_shot import TaskPrompt
from fastbfm.bfm.protocol import BFM
from fastbfm.envs.batch import BatchedEnv
from fastbfm.envs.registry import Task, get_domain
from fastbfm.errors import FastBFMError
from fastbfm.evaluate.rollout import evaluate_latent


@dataclass(frozen=True)
class LoLAConfig:
    episodes: int = 20
    """Adaptation budget in episodes of the task (episode_length environment steps each)."""
    num_candidates: int = 8
    horizon: int = 125
    sigma: float = 0.2
    """Std of the latent perturbation per coordinate; latents have norm sqrt(d), so about the relative noise."""
    lr: float = 0.05
    discount: float = 0.99
    pessimism: float = 0.5
    eval_episodes: int = 10
    seed: int = 0

    def __post_init__(self):
        if self.num_candidates < 2:
            raise FastBFMError("LoLA needs at least 2 candidates for its leave-one-out baseline")
        if self.horizon < 1 or self.episodes < 0 or self.sigma <= 0 or self.lr <= 0 or self.eval_episodes < 1:
            raise FastBFMError("LoLA needs horizon >= 1, episodes >= 0, sigma > 0, lr > 0 and eval_episodes >= 1")


@dataclass
class AdaptationCurve:
    """Evaluation returns of the adapted latent against the budget spent."""

    episodes: list[float] = field(default_factory=list)
    """Environment steps spent on adaptation, in episodes."""
    returns: list[float] = field(default_factory=list)
    """Mean evaluation return of the latent after that budget; index 0 is the zero-shot latent."""
    compute_s: float = 0.0
    """Wall-clock of adaptation, simulation included, evaluation excluded."""
    z: torch.Tensor | None = None


@torch.inference_mode()
def lola(model: BFM, task: Task, prompt: TaskPrompt, config: LoLAConfig = LoLAConfig(), progress: bool = False) -> AdaptationCurve:
    domain = get_domain(task.domain)
    k, H = config.num_candidates, min(config.horizon, domain.episode_length)
    budget = config.episodes * domain.episode_length
    iterations = budget // (k * H)
    rng = np.random.default_rng([config.seed, 1])
    generator = torch.Generator().manual_seed(config.seed)
    env = BatchedEnv(task, num_envs=k)
    mu = prompt.z.clone()
    with torch.enable_grad():
        mu_param = torch.nn.Parameter(mu.clone())
        optimizer = torch.optim.Adam([mu_param], lr=config.lr)
    discounts = config.discount ** np.arange(H)

    curve = AdaptationCurve()
    curve.episodes.append(0.0)
    curve.returns.append(float(evaluate_latent(model, task, mu, config.eval_episodes, config.seed).mean()))
    for it in tqdm(range(iterations), desc=f"lola {task.full_name}", disable=not progress):
        start = time.perf_counter()
        eps = torch.randn(k, model.z_dim, generator=generator)
        z = model.project(mu.unsqueeze(0) + config.sigma * eps)
        obs = env.set_state(np.repeat(domain.sample_initial_state(rng, 1), k, axis=0))
        scores = np.zeros(k)
        for t in range(H):
            obs, reward = env.step(model.act(torch.from_numpy(obs), z, mean=True).numpy())
            scores += discounts[t] * reward
        last = torch.from_numpy(obs)
        bootstrap = model.q_value(last, model.act(last, z, mean=True), z, prompt.w.expand(k, -1), config.pessimism)
        scores += config.discount**H * bootstrap.numpy()
        if not np.isfinite(scores).all():
            raise FastBFMError(f"LoLA on {task.full_name}: non-finite scores at iteration {it}")
        advantages = torch.from_numpy(scores - (scores.sum() - scores) / (k - 1)).float()
        grad = (advantages.unsqueeze(-1) * eps).mean(0) / config.sigma
        with torch.enable_grad():
            optimizer.zero_grad()
            mu_param.grad = -grad
            optimizer.step()
            mu_param.data = model.project(mu_param.data)
        mu = mu_param.detach().clone()
        curve.compute_s += time.perf_counter() - start
        curve.episodes.append((it + 1) * k * H / domain.episode_length)
        curve.returns.append(float(evaluate_latent(model, task, mu, config.eval_episodes, config.seed).mean()))
    curve.z = mu
    return curve


__all__ = ["LoLAConfig", "AdaptationCurve", "lola"]
