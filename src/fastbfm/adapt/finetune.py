"""Actor-critic fine-tuning of a BFM's networks (TD3-style, initialised from the BFM): the reference
that adapts everything, pays for it in compute, and typically dips below zero-shot first (unlearning).

The latent stays at the zero-shot z_r; what changes are copies of the networks. The critic is the BFM's
own value for the task, Q_k(s, a) = psi_k(s, a, z_r)^T w_r per ensemble member (w_r: the reward's
unprojected embedding, so Q is in the reward's units), and the actor is pi(., z_r). Each episode of
budget collects one episode with the actor plus Gaussian action noise; then ``updates_per_episode``
TD3 updates (default 1000: one per environment step, TD3's ratio) fit the critic to

    y = r + gamma * aggregate_k psi'_k(s', a', z_r)^T w_r,   a' = pi'(s', z_r) + clipped noise

(primes: Polyak-averaged target copies; aggregate with pessimism 0.5 is the min of two members) and,
every second update, step the actor on -aggregate_k psi_k(s, pi(s, z_r), z_r)^T w_r.

Protocol only, with one extra assumption: the model is a ``torch.nn.Module`` (all of fastbfm's BFMs and
the Meta Motivo wrapper are), so that it can be deep-copied and its parameters trained. Which parameters
are the critic's and which the actor's is found through the protocol: the critic's are those that
``successor_features`` depends on, the actor's those that ``act`` depends on and the critic's do not
(a trunk shared by both is trained by the critic loss only). The features phi are not used.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch

from fastbfm.adapt.adapter import Adapter, run_seeds
from fastbfm.adapt.curve import AdaptationCurve
from fastbfm.adapt.online import ReplayBuffer, smoothed
from fastbfm.adapt.zero_shot import TaskPrompt
from fastbfm.bfm.losses import aggregate
from fastbfm.bfm.nn import polyak
from fastbfm.bfm.protocol import BFM, training_discount
from fastbfm.envs.registry import Task
from fastbfm.errors import FastBFMError
from fastbfm.schemas import check_finite_fields


@dataclass(frozen=True)
class FinetuneConfig:
    episodes: int = 20
    """Adaptation budget in episodes; each collects one episode."""
    updates_per_episode: int = 1000
    batch_size: int = 256
    critic_lr: float = 1e-4
    actor_lr: float = 1e-4
    actor_every: int = 2
    tau: float = 0.005
    exploration_noise: float = 0.2
    target_noise: float = 0.2
    noise_clip: float = 0.5
    discount: float | None = None
    """None: the model's training discount (``model.discount``)."""
    pessimism: float = 0.5
    eval_episodes: int = 10
    eval_every: float = 0.0
    """Evaluate after every step of the method (0) or every this many episodes of budget."""
    method_name = "finetune"

    def __post_init__(self):
        check_finite_fields(self, "fine-tuning")
        if min(self.updates_per_episode, self.batch_size, self.actor_every, self.eval_episodes) < 1 or self.episodes < 0:
            raise FastBFMError("fine-tuning needs episodes >= 0 and updates_per_episode, batch_size, actor_every, eval_episodes >= 1")
        if min(self.critic_lr, self.actor_lr) <= 0 or not 0 < self.tau <= 1 or min(self.exploration_noise, self.target_noise, self.noise_clip) < 0:
            raise FastBFMError("fine-tuning needs positive learning rates, 0 < tau <= 1 and non-negative noises")


def split_parameters(model: torch.nn.Module, obs: torch.Tensor, action: torch.Tensor, z: torch.Tensor) -> tuple[list, list]:
    """(critic, actor) parameters of a protocol model, by which ones its outputs depend on."""
    params = list(model.parameters())
    for p in params:
        p.requires_grad_(True)
        p.grad = None

    def used(output: torch.Tensor) -> set[int]:
        grads = torch.autograd.grad(output.sum(), params, allow_unused=True)
        return {i for i, g in enumerate(grads) if g is not None}

    critic = used(model.successor_features(obs, action, z))
    actor = used(model.act(obs, z, mean=True)) - critic
    return [params[i] for i in sorted(critic)], [params[i] for i in sorted(actor)]


class Finetune(Adapter):
    """One seed's copies of the networks (online and target), optimisers and replay buffer. A round is
    one exploratory episode, then ``updates_per_episode`` updates."""

    label = "fine-tuning"

    def __init__(self, model: BFM, prompt: TaskPrompt, config: FinetuneConfig, seed: int, episode_length: int):
        if not isinstance(model, torch.nn.Module):
            raise FastBFMError(f"fine-tuning trains the model's networks: it needs a torch.nn.Module, got {type(model).__name__}")
        super().__init__(model, seed, rollouts=1, shared_start=False)
        self.config, self.generator, self.horizon = config, torch.Generator().manual_seed(seed), episode_length
        self.gamma = training_discount(model) if config.discount is None else config.discount
        self.noise_rng = np.random.default_rng([seed, 11])
        capacity = config.episodes * episode_length
        self.online = copy.deepcopy(model)
        self.z, self.w = prompt.z.clone().unsqueeze(0), prompt.w.clone().unsqueeze(0)
        probe = torch.zeros(1, model.obs_dim)
        self.critic_params, self.actor_params = split_parameters(self.online, probe, torch.zeros(1, model.action_dim), self.z)
        if not self.critic_params or not self.actor_params:
            raise FastBFMError("fine-tuning needs a model whose successor features and policy have trainable parameters")
        self.target = copy.deepcopy(self.online).requires_grad_(False)
        names = {id(p): n for n, p in self.online.named_parameters()}
        target_params = dict(self.target.named_parameters())
        self.tracked = self.critic_params + self.actor_params
        self.tracked_target = [target_params[names[id(p)]] for p in self.tracked]
        self.critic_optimizer = torch.optim.Adam(self.critic_params, lr=config.critic_lr)
        self.actor_optimizer = torch.optim.Adam(self.actor_params, lr=config.actor_lr)
        self.buffer = ReplayBuffer(capacity, model.obs_dim, model.action_dim)
        self.updates = 0

    def q(self, net: BFM, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """(K, N): the value of every ensemble member."""
        n = len(obs)
        return (net.successor_features(obs, action, self.z.expand(n, -1)) * self.w).sum(-1)

    def policy(self, obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self.online.act(torch.from_numpy(obs), self.z.expand(len(obs), -1), mean=True).numpy()

    def propose(self, start_obs: np.ndarray) -> None:
        self.noise = self.config.exploration_noise * self.noise_rng.standard_normal((self.horizon, self.model.action_dim))

    def rollout_policy(self, obs: np.ndarray, t: int) -> np.ndarray:
        return self.policy(obs)

    def explore(self, actions: np.ndarray, t: int) -> np.ndarray:
        return np.clip(actions + self.noise[t], -1, 1)

    def observe(self, obs, actions, rewards, next_obs) -> None:
        self.buffer.add(obs[:, 0], actions[:, 0], rewards[:, 0], next_obs[:, 0])

    def update(self) -> None:
        for _ in range(self.config.updates_per_episode):
            self._update(self.gamma)

    def current_latent(self) -> None:
        return None

    def _update(self, gamma: float) -> None:
        cfg = self.config
        obs, action, reward, next_obs, _ = self.buffer.sample(cfg.batch_size, self.generator)
        z = self.z.expand(len(obs), -1)
        with torch.no_grad():
            next_action = smoothed(self.target.act(next_obs, z, mean=True), self.generator, cfg.target_noise, cfg.noise_clip)
            target = reward + gamma * aggregate(self.q(self.target, next_obs, next_action), cfg.pessimism)
        loss = (self.q(self.online, obs, action) - target).pow(2).mean(1).sum()
        self.critic_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.critic_optimizer.step()
        self.updates += 1
        if self.updates % cfg.actor_every:
            return
        for p in self.critic_params:  # the critic only passes the gradient to the action here
            p.requires_grad_(False)
        actor_loss = -aggregate(self.q(self.online, obs, self.online.act(obs, z, mean=True)), cfg.pessimism).mean()
        self.actor_optimizer.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_optimizer.step()
        for p in self.critic_params:
            p.requires_grad_(True)
        polyak(self.tracked_target, self.tracked, cfg.tau)


def finetune_seeds(
    model: BFM, task: Task, prompt: TaskPrompt, config: FinetuneConfig, seeds: list[int], progress: bool = False
) -> list[AdaptationCurve]:
    """Independent fine-tuning runs, one per seed, with their episodes in one batch of simulations; each
    seed trains its own copies of the networks, so each run equals a lone run with its seed. The
    given model is left untouched; ``curve.z`` is None (the adapted policy is the copied networks')."""
    return run_seeds(Finetune, model, task, prompt, config, seeds, progress, f"{config.method_name} {task.full_name}")
