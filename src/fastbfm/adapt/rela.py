"""ReLA: residual latent adaptation (Sikchi et al., RLC 2025), an off-policy actor-critic whose actor is
the latent; the BFM stays frozen.

By linearity of value in the reward, for any latent z and the reward's embedding w_r (unprojected, so
in the reward's units; z_r = project(w_r)):

    Q^{pi_z}_r(s, a) = psi(s, a, z)^T w_r + Q^{pi_z}_{r - phi^T w_r}(s, a).

The first term is the frozen BFM's critic; the second is learned online by twin residual critics
Q_res(s, a, z) (small MLPs with target networks, TD3-style: clipped double-Q targets and smoothed target
actions) on the *projection residual* r - phi(s')^T w_r of the collected transitions:

    y = r - phi(s')^T w_r + gamma * min_j Q'_res_j(s', a', z),   a' = pi(s', z) + clipped noise,

z being the latent that acted. The latent ascends, over replayed states,

    mean_s [aggregate_k psi_k(s, pi(s, z), z)^T w_r + mean_j Q_res_j(s, pi(s, z), z)]

with Adam, and is re-projected after every step.

``residual="bellman"`` (an option, not the paper's) instead fits Q_res to the Bellman residual of the
frozen critic, y = r + gamma (psi(s', a', z)^T w_r + Q'_res) - psi(s, a, z)^T w_r, so that it also
corrects the successor features' own errors, at two more psi passes per update.

Choices the paper leaves open (methods.md section 3), and fastbfm's answers:
- the residual critic takes z as an input, as psi does (the residual value depends on the policy). On
  DMC's force-actuated bodies one action barely moves the next state, so a critic of (s, a) alone
  gives the latent only the faint action gradient dQ/da dpi/dz (on the toy maze task of the tests it
  climbed the wrong way); with z as an input it also learns how the value moves with the latent;
- exploration, to give it latents to learn from: each episode is cut into segments of ``segment``
  steps, each acting with its own perturbed latent project(z + latent_noise * eps) (as LoLA's
  candidates), plus Gaussian action noise;
- latent: one global z by default (``latent="global"``); ``latent="state"`` learns
  z(s) = project(z_r + delta(s)) with delta an MLP whose last layer starts at zero (the critic then
  scores z(s) as if it were held from s on);
- residual critics: 2 x 256 MLPs on (s, a, z), the last layer zero so that Q_res starts at 0 and the
  first policy is exactly the zero-shot one; observations standardised with the first episode's
  statistics (the maze's positions span +-0.3 m);
- updates: after each collected episode, ``updates_per_episode`` critic updates of batch 256, the
  latent stepped every second one (TD3's delay): an update-to-data ratio of 1/4 by default;
- discount: the model's training discount (psi is a sum discounted by it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from fastbfm.adapt.adapter import Adapter, run_seeds
from fastbfm.adapt.curve import AdaptationCurve
from fastbfm.adapt.online import ReplayBuffer, smoothed
from fastbfm.adapt.safe import SafeConfig
from fastbfm.adapt.zero_shot import TaskPrompt
from fastbfm.bfm.nn import mlp, polyak
from fastbfm.bfm.protocol import BFM, training_discount
from fastbfm.envs.registry import Task
from fastbfm.errors import FastBFMError
from fastbfm.schemas import check_finite_fields

LATENTS = ("global", "state")
RESIDUALS = ("projection", "bellman")


@dataclass(frozen=True)
class ReLAConfig:
    episodes: int = 20
    """Adaptation budget in episodes; each collects one episode."""
    latent: str = "global"
    """``global``: one latent; ``state``: z(s) = project(z_r + delta(s))."""
    residual: str = "projection"
    """What Q_res learns: ``projection`` (r - phi^T w_r, the paper's) or ``bellman`` (the frozen critic's TD error)."""
    updates_per_episode: int = 250
    batch_size: int = 256
    hidden_dim: int = 256
    critic_lr: float = 3e-4
    latent_lr: float = 1e-3
    """Adam step on the global latent (norm sqrt(d)); the state-conditioned delta uses ``delta_lr``."""
    delta_lr: float = 1e-4
    actor_every: int = 2
    tau: float = 0.005
    trust_radius: float | None = None
    """Trust region of the global latent: after every step it is pulled back to within this distance of
    z_r, relative to |z_r| (None: unbounded)."""
    warmup_episodes: int = 0
    """Episodes whose updates train the residual critics only; the latent moves from the next one on."""
    latent_noise: float = 0.1
    """Std per coordinate of the explored latents around the current one (as LoLA's sigma)."""
    segment: int = 100
    """Steps each explored latent acts for; an episode explores episode_length / segment latents."""
    exploration_noise: float = 0.1
    """Std of the Gaussian action noise while collecting."""
    target_noise: float = 0.2
    noise_clip: float = 0.5
    discount: float | None = None
    """None: the model's training discount (``model.discount``)."""
    pessimism: float = 0.5
    safe: SafeConfig | None = SafeConfig()
    """With the global latent: deploy a new latent only on a won paired duel (``fastbfm.adapt.safe``);
    None: the learned latent is the policy. A state-conditioned latent has no single latent to deploy and
    runs ungated."""
    eval_episodes: int = 10
    eval_every: float = 0.0
    """Evaluate after every step of the method (0) or every this many episodes of budget."""
    @property
    def method_name(self) -> str:
        # a state-conditioned latent has no single latent to deploy: it runs ungated whatever ``safe`` says
        return "rela" if self.safe is not None or self.latent == "state" else "rela-unsafe"

    def __post_init__(self):
        check_finite_fields(self, "ReLA")
        if self.latent not in LATENTS:
            raise FastBFMError(f"unknown ReLA latent '{self.latent}'; latents: {', '.join(LATENTS)}")
        if self.residual not in RESIDUALS:
            raise FastBFMError(f"unknown ReLA residual '{self.residual}'; residuals: {', '.join(RESIDUALS)}")
        if min(self.updates_per_episode, self.batch_size, self.hidden_dim, self.actor_every, self.segment, self.eval_episodes) < 1 or self.episodes < 0:
            raise FastBFMError("ReLA needs episodes >= 0 and updates_per_episode, batch_size, hidden_dim, actor_every, segment, eval_episodes >= 1")
        if (self.trust_radius is not None and self.trust_radius <= 0) or self.warmup_episodes < 0:
            raise FastBFMError("ReLA needs trust_radius > 0 (or None) and warmup_episodes >= 0")
        if min(self.critic_lr, self.latent_lr, self.delta_lr) <= 0 or not 0 < self.tau <= 1 or min(self.latent_noise, self.exploration_noise, self.target_noise, self.noise_clip) < 0:
            raise FastBFMError("ReLA needs positive learning rates, 0 < tau <= 1 and non-negative noises")


class ReLA(Adapter):
    """One seed's learner: residual critics and their targets, the latent (or delta net), optimisers.
    A round is one exploratory episode, then ``updates_per_episode`` updates."""

    label = "ReLA"

    def __init__(self, model: BFM, prompt: TaskPrompt, config: ReLAConfig, seed: int, episode_length: int):
        super().__init__(model, seed, rollouts=1, shared_start=False)
        # a copy: the prompt's tensors come from inference mode and cannot enter autograd
        self.config, self.w, self.horizon = config, prompt.w.clone(), episode_length
        self.gamma = training_discount(model) if config.discount is None else config.discount
        self.noise_rng = np.random.default_rng([seed, 11])
        self.generator = torch.Generator().manual_seed(seed)
        capacity = config.episodes * episode_length
        with torch.random.fork_rng():
            torch.manual_seed(seed)  # network initialisation, without touching the caller's global RNG
            self._build(model, prompt, config)
        self.buffer = ReplayBuffer(capacity, model.obs_dim, model.action_dim, model.z_dim)
        self.obs_mean, self.obs_std = torch.zeros(model.obs_dim), torch.ones(model.obs_dim)
        self.updates = self.episodes_seen = 0

    def _build(self, model: BFM, prompt: TaskPrompt, config: ReLAConfig) -> None:
        self.critic = mlp(model.obs_dim + model.action_dim + model.z_dim, [config.hidden_dim] * 2, 1, ensemble_size=2)
        self.critic[-1].weight.data.zero_()
        self.critic[-1].bias.data.zero_()
        self.critic_target = mlp(model.obs_dim + model.action_dim + model.z_dim, [config.hidden_dim] * 2, 1, ensemble_size=2)
        self.critic_target.load_state_dict(self.critic.state_dict())
        self.critic_target.requires_grad_(False)
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=config.critic_lr)
        self.z = torch.nn.Parameter(prompt.z.clone())
        self.z_reward = prompt.z.clone()
        if config.latent == "state":
            self.delta = mlp(model.obs_dim, [config.hidden_dim] * 2, model.z_dim, ensemble_size=1)
            self.delta[-1].weight.data.zero_()
            self.delta[-1].bias.data.zero_()
            self.z.requires_grad_(False)  # the base stays z_r
            self.actor_optimizer = torch.optim.Adam(self.delta.parameters(), lr=config.delta_lr)
        else:
            self.actor_optimizer = torch.optim.Adam([self.z], lr=config.latent_lr)

    def normalize(self, obs: torch.Tensor) -> torch.Tensor:
        return (obs - self.obs_mean) / self.obs_std

    def latent(self, obs: torch.Tensor) -> torch.Tensor:
        """The latent at each state, (N, z_dim)."""
        if self.config.latent == "global":
            return self.z.expand(len(obs), -1)
        return self.model.project(self.z + self.delta(self.normalize(obs).unsqueeze(0))[0])

    def residual(self, net: torch.nn.Module, obs: torch.Tensor, action: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """(2, N): the twin residual values."""
        return net(torch.cat([self.normalize(obs), action, z], -1).unsqueeze(0).expand(2, -1, -1))[..., 0]

    def bfm_q(self, obs: torch.Tensor, action: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.model.q_value(obs, action, z, self.w.expand(len(obs), -1), self.config.pessimism)

    def act(self, obs: np.ndarray, eps: torch.Tensor | None = None) -> tuple[np.ndarray, torch.Tensor]:
        """Actions and latents at states (N, obs_dim); ``eps`` (z_dim,): an exploration perturbation."""
        with torch.no_grad():
            obs_t = torch.from_numpy(obs)
            z = self.latent(obs_t)
            if eps is not None:
                z = self.model.project(z + self.config.latent_noise * eps)
            return self.model.act(obs_t, z, mean=True).numpy(), z

    def propose(self, start_obs: np.ndarray) -> None:
        cfg, T = self.config, self.horizon
        self.noise = cfg.exploration_noise * self.noise_rng.standard_normal((T, self.model.action_dim))
        self.eps = torch.from_numpy(self.noise_rng.standard_normal((-(-T // cfg.segment), self.model.z_dim))).float()
        if cfg.latent == "global":
            with torch.no_grad():
                self.segment_z = self.model.project(self.z + cfg.latent_noise * self.eps)
            self.acted = self.segment_z.numpy()[np.arange(T) // cfg.segment]  # the latent of every step
        else:
            self.acted = np.empty((T, self.model.z_dim), np.float32)  # filled as the state latents act

    def rollout_latents(self, t: int) -> torch.Tensor | None:
        return self.segment_z[t // self.config.segment].unsqueeze(0) if self.config.latent == "global" else None

    def rollout_policy(self, obs: np.ndarray, t: int) -> np.ndarray:
        action, z = self.act(obs, self.eps[t // self.config.segment])
        self.acted[t] = z[0].numpy()
        return action

    def explore(self, actions: np.ndarray, t: int) -> np.ndarray:
        return np.clip(actions + self.noise[t], -1, 1)

    def observe(self, obs, actions, rewards, next_obs) -> None:
        obs, actions, rewards, next_obs = obs[:, 0], actions[:, 0], rewards[:, 0], next_obs[:, 0]
        if self.buffer.size == 0:
            flat = torch.from_numpy(obs)
            self.obs_mean, self.obs_std = flat.mean(0), flat.std(0).clamp_min(1e-3)
        self.buffer.add(obs, actions, rewards, next_obs, self.acted)

    def update(self) -> None:
        self.episodes_seen += 1
        for _ in range(self.config.updates_per_episode):
            self._update(self.gamma)
        if not torch.isfinite(self.z).all():
            raise FastBFMError("the latent became non-finite")

    def _constrain(self, z: torch.Tensor) -> torch.Tensor:
        """Back on the sphere, and within the trust region around z_r (a few bisection steps on the segment
        from z_r: the sphere's arc and the ball meet there)."""
        z = self.model.project(z)
        radius = self.config.trust_radius
        if radius is None or (z - self.z_reward).norm() <= radius * self.z_reward.norm():
            return z
        low, high = 0.0, 1.0
        for _ in range(30):
            mid = (low + high) / 2
            inside = (self.model.project(self.z_reward + mid * (z - self.z_reward)) - self.z_reward).norm() <= radius * self.z_reward.norm()
            low, high = (mid, high) if inside else (low, mid)
        return self.model.project(self.z_reward + low * (z - self.z_reward))

    def current_latent(self) -> torch.Tensor | None:
        return self.z.detach() if self.config.latent == "global" else None

    def policy(self, obs: np.ndarray) -> np.ndarray:
        return self.act(obs)[0]

    def _update(self, gamma: float) -> None:
        cfg, model = self.config, self.model
        obs, action, reward, next_obs, z = self.buffer.sample(cfg.batch_size, self.generator)
        with torch.no_grad():
            next_action = smoothed(model.act(next_obs, z, mean=True), self.generator, cfg.target_noise, cfg.noise_clip)
            next_q = self.residual(self.critic_target, next_obs, next_action, z).min(0).values
            if cfg.residual == "projection":
                target = reward - model.features(next_obs) @ self.w + gamma * next_q
            else:
                target = reward + gamma * (self.bfm_q(next_obs, next_action, z) + next_q) - self.bfm_q(obs, action, z)
        loss = (self.residual(self.critic, obs, action, z) - target).pow(2).mean(1).sum()
        self.critic_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.critic_optimizer.step()
        self.updates += 1
        if self.updates % cfg.actor_every or self.episodes_seen <= cfg.warmup_episodes:
            return
        self.critic.requires_grad_(False)
        z = self.latent(obs)
        action_pi = model.act(obs, z, mean=True)
        objective = self.bfm_q(obs, action_pi, z) + self.residual(self.critic, obs, action_pi, z).mean(0)
        self.actor_optimizer.zero_grad(set_to_none=True)
        (-objective.mean()).backward()
        self.actor_optimizer.step()
        self.critic.requires_grad_(True)
        with torch.no_grad():
            self.z.copy_(self._constrain(self.z))
        polyak(list(self.critic_target.parameters()), list(self.critic.parameters()), cfg.tau)


def rela_seeds(
    model: BFM, task: Task, prompt: TaskPrompt, config: ReLAConfig, seeds: list[int], progress: bool = False
) -> list[AdaptationCurve]:
    """Independent ReLA runs, one per seed: episodes of all seeds in one batch of simulations, each
    seed's learning on its own buffer and generator, so that each run equals a lone run with its seed.
    ``curve.z`` is the adapted global latent (``latent="state"``: None, as no single latent is the policy)."""
    return run_seeds(ReLA, model, task, prompt, config, seeds, progress, f"{config.method_name} {task.full_name}")
