"""A learning explorer: DDPG rewarded only by random network distillation (RND), on batched simulation.

URLB's RND agent (the recipe behind ExORL's datasets; ``../shared/research/exploration.md``) sized for
two CPU cores: many simulations step together, the policy acts for all of them in one call, and the
networks learn between steps from every transition collected so far. What it learns:

- **RND**: a predictor network chases a frozen random target network on normalised observations (a
  running mean and variance, clipped to +-5). Its error is small on states seen often and large on new
  ones; divided by its running standard deviation it is the intrinsic reward, the only reward.
- **DDPG**: an actor and twin critics (first layer LayerNorm + tanh) maximise the discounted intrinsic
  return with n-step targets, Polyak-averaged target critics, Gaussian exploration noise (clipped
  noise on the target policy's action), after a first stretch of uniform random actions.

Resumable exactly like the archive explorer: after each round its whole state (networks, optimisers,
running statistics) is saved atomically beside the episodes, the replay is the episodes on disk, and
each round's random numbers derive from the seed and the round's index.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fastbfm.envs.batch import BatchedEnv
from fastbfm.envs.registry import Domain
from fastbfm.errors import FastBFMError
from fastbfm.io import load_tensors, optimizer_tensors, read_json, restore_optimizer, save_tensors, write_json

STATE_PREFIX = "explorer-"


@dataclass(frozen=True)
class RNDConfig:
    """The explorer's sizes and learning settings (URLB's in brackets where they differ)."""

    hidden: int = 256
    """Width of actor and critics [1024]."""
    rnd_hidden: int = 256
    """Width of the RND predictor and target [1024]."""
    rnd_dim: int = 128
    """Output size of the RND networks [512]."""
    batch_size: int = 256
    """[1024]"""
    transitions_per_update: int = 16
    """Environment transitions collected per gradient update [2]: the CPU's budget."""
    lr: float = 1e-4
    n_step: int = 3
    discount: float = 0.99
    tau: float = 0.01
    noise: float = 0.2
    noise_clip: float = 0.3
    random_transitions: int = 4000
    """Uniform random actions for the first this many transitions (all simulations together)."""
    obs_clip: float = 5.0
    stats_momentum: float = 0.01
    """Rate of the running observation and intrinsic-reward statistics."""

    def __post_init__(self):
        for name in ("hidden", "rnd_hidden", "rnd_dim", "batch_size", "transitions_per_update", "n_step"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1 << 16:
                raise FastBFMError(f"rnd.{name} must be an integer from 1 to 65536, got {value!r}")
        for name in ("lr", "discount", "tau", "noise", "noise_clip", "obs_clip", "stats_momentum"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise FastBFMError(f"rnd.{name} must be a finite number >= 0, got {value!r}")
        if not 0 <= self.discount < 1 or not 0 < self.tau <= 1:
            raise FastBFMError("rnd.discount must lie in [0, 1) and rnd.tau in (0, 1]")


def _trunk(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    """URLB's actor and critic layout: Linear, LayerNorm, tanh, Linear, ReLU, Linear."""
    return nn.Sequential(
        nn.Linear(in_dim, hidden), nn.LayerNorm(hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, out_dim)
    )


def _rnd_net(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    net = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, out_dim))
    for layer in net:
        if isinstance(layer, nn.Linear):
            nn.init.orthogonal_(layer.weight)
            nn.init.zeros_(layer.bias)
    return net


class RunningStats:
    """Exponential running mean and variance of a batch of vectors (or scalars)."""

    def __init__(self, dim: int, momentum: float):
        self.mean, self.var, self.momentum, self.count = torch.zeros(dim), torch.ones(dim), momentum, torch.zeros(())

    def update(self, x: torch.Tensor) -> None:
        m = 1.0 if self.count == 0 else self.momentum  # the first batch sets the statistics
        self.mean.lerp_(x.mean(0), m)
        self.var.lerp_(x.var(0, unbiased=False), m)
        self.count += 1

    def tensors(self, prefix: str) -> dict[str, torch.Tensor]:
        return {f"{prefix}.mean": self.mean, f"{prefix}.var": self.var, f"{prefix}.count": self.count}

    def load(self, tensors: dict[str, torch.Tensor], prefix: str) -> None:
        self.mean, self.var, self.count = (tensors[f"{prefix}.{k}"].clone() for k in ("mean", "var", "count"))


class RND:
    """Random network distillation: ``reward(obs)`` high on unfamiliar observations, ``update(obs)`` makes them familiar."""

    def __init__(self, obs_dim: int, config: RNDConfig):
        self.config = config
        self.predictor = _rnd_net(obs_dim, config.rnd_hidden, config.rnd_dim)
        self.target = _rnd_net(obs_dim, config.rnd_hidden, config.rnd_dim).requires_grad_(False)
        self.optimizer = torch.optim.Adam(self.predictor.parameters(), lr=config.lr)
        self.obs_stats = RunningStats(obs_dim, config.stats_momentum)
        self.reward_stats = RunningStats(1, config.stats_momentum)

    def _error(self, obs: torch.Tensor) -> torch.Tensor:
        normed = ((obs - self.obs_stats.mean) / (self.obs_stats.var + 1e-8).sqrt()).clamp(-self.config.obs_clip, self.config.obs_clip)
        return (self.predictor(normed) - self.target(normed)).pow(2).mean(-1)

    def update(self, obs: torch.Tensor) -> float:
        self.obs_stats.update(obs)
        loss = self._error(obs).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())

    @torch.no_grad()
    def reward(self, obs: torch.Tensor, update_stats: bool = False) -> torch.Tensor:
        """Prediction error divided by its running standard deviation (no mean subtracted, as URLB)."""
        error = self._error(obs)
        if update_stats:
            self.reward_stats.update(error.unsqueeze(-1))
        return error / (self.reward_stats.var.sqrt() + 1e-8)


class Replay:
    """Every transition collected so far, by segment, the round in progress included as it fills:
    uniform samples with n-step landing states."""

    def __init__(self):
        self.obs: list[np.ndarray] = []  # each (segments, T + 1, obs_dim)
        self.actions: list[np.ndarray] = []  # each (segments, T + 1, action_dim); row 0 unused
        self.filled: list[int] = []  # steps of each part's segments written so far

    def add(self, obs: np.ndarray, actions: np.ndarray, filled: int | None = None) -> None:
        """Segments (segments, T + 1, dim), their first ``filled`` steps written (default: all; the arrays
        are then filled in place as the round runs, and ``filled`` raised with :meth:`grow`)."""
        self.obs.append(np.asarray(obs, np.float32))
        self.actions.append(np.asarray(actions, np.float32))
        self.filled.append(obs.shape[1] - 1 if filled is None else filled)

    def grow(self) -> None:
        """One more step of the last part written."""
        self.filled[-1] += 1

    def _sizes(self) -> np.ndarray:
        return np.array([o.shape[0] * f for o, f in zip(self.obs, self.filled)], dtype=np.int64)

    def __len__(self) -> int:
        return int(self._sizes().sum()) if self.obs else 0

    def sample(self, n: int, n_step: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
        """(obs, action, landing obs, steps to it) of ``n`` transitions drawn uniformly, in draw order
        (however the segments were added: a resumed replay samples as an uninterrupted one)."""
        sizes = self._sizes()
        ends = np.cumsum(sizes)
        flat = rng.integers(ends[-1], size=n)
        part = np.searchsorted(ends, flat, side="right")
        obs_dim, action_dim = self.obs[0].shape[-1], self.actions[0].shape[-1]
        obs, landing = np.empty((n, obs_dim), np.float32), np.empty((n, obs_dim), np.float32)
        actions, steps = np.empty((n, action_dim), np.float32), np.empty(n, np.int64)
        for p in np.unique(part):
            mask = part == p
            filled = self.filled[p]
            seg, t = np.divmod(flat[mask] - (ends[p] - sizes[p]), filled)
            k = np.minimum(n_step, filled - t)
            obs[mask], actions[mask], landing[mask], steps[mask] = self.obs[p][seg, t], self.actions[p][seg, t + 1], self.obs[p][seg, t + k], k
        return obs, actions, landing, steps


class RNDExplorer:
    """DDPG on RND's intrinsic reward (see the module), acting for a batch of simulations at once."""

    def __init__(self, domain: Domain, config: RNDConfig, seed: int):
        self.domain, self.config, self.seed = domain, config, seed
        obs_dim, action_dim = domain.observation_dim, domain.action_dim
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.actor = _trunk(obs_dim, config.hidden, action_dim)
            self.critics = nn.ModuleList([_trunk(obs_dim + action_dim, config.hidden, 1) for _ in range(2)])
            self.rnd = RND(obs_dim, config)
        self.target_critics = _frozen_copy(self.critics)
        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=config.lr)
        self.critic_optimizer = torch.optim.Adam(self.critics.parameters(), lr=config.lr)
        self.replay = Replay()
        self.transitions = 0
        self.debt = 0.0  # transitions collected not yet paid for by updates

    # -- acting --------------------------------------------------------------------------------------
    def _policy(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.actor(obs))

    @torch.no_grad()
    def act(self, obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        n, a = len(obs), self.domain.action_dim
        if self.transitions < self.config.random_transitions:
            return rng.uniform(-1, 1, (n, a))
        mean = self._policy(torch.from_numpy(np.asarray(obs, np.float32))).numpy()
        return np.clip(mean + self.config.noise * rng.standard_normal((n, a)), -1, 1)

    # -- learning ------------------------------------------------------------------------------------
    def update(self, rng: np.random.Generator, generator: torch.Generator) -> None:
        cfg = self.config
        obs, action, landing, steps = (torch.from_numpy(x) for x in self.replay.sample(cfg.batch_size, cfg.n_step, rng))
        self.rnd.update(obs)
        reward = self.rnd.reward(landing, update_stats=True)
        with torch.no_grad():
            mean = self._policy(landing)
            noise = (torch.randn(mean.shape, generator=generator) * cfg.noise).clamp(-cfg.noise_clip, cfg.noise_clip)
            next_action = (mean + noise).clamp(-1, 1)
            x = torch.cat([landing, next_action], -1)
            next_q = torch.minimum(self.target_critics[0](x), self.target_critics[1](x)).squeeze(-1)
            target = reward + cfg.discount ** steps.float() * next_q
        x = torch.cat([obs, action], -1)
        critic_loss = sum((critic(x).squeeze(-1) - target).pow(2).mean() for critic in self.critics)
        self.critic_optimizer.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_optimizer.step()
        mean = self._policy(obs)
        noise = (torch.randn(mean.shape, generator=generator) * cfg.noise).clamp(-cfg.noise_clip, cfg.noise_clip)
        x = torch.cat([obs, (mean + noise).clamp(-1, 1)], -1)
        self.critics.requires_grad_(False)
        actor_loss = -torch.minimum(self.critics[0](x), self.critics[1](x)).mean()
        self.actor_optimizer.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_optimizer.step()
        self.critics.requires_grad_(True)
        with torch.no_grad():
            for target_net, net in zip(self.target_critics, self.critics):
                torch._foreach_lerp_(list(target_net.parameters()), list(net.parameters()), cfg.tau)
        if not (math.isfinite(float(critic_loss.detach())) and math.isfinite(float(actor_loss.detach()))):
            raise FastBFMError("the RND explorer diverged (a non-finite critic or actor loss)")

    def explore_round(self, env: BatchedEnv, starts: np.ndarray, T: int, round_index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Roll out ``T`` steps from ``starts`` in every simulation, learning as transitions arrive:
        (observations (T + 1, n, obs_dim), actions (T + 1, n, action_dim), physics (T + 1, n, state_dim))."""
        rng = np.random.default_rng([self.seed, round_index, 7])
        generator = torch.Generator().manual_seed(int(rng.integers(1 << 62)))
        n, A = env.num_envs, self.domain.action_dim
        # the round's segments join the replay now and fill in place: learning sees each transition as it arrives
        obs = np.empty((n, T + 1, self.domain.observation_dim), np.float32)
        actions = np.zeros((n, T + 1, A), np.float32)
        physics = np.empty((T + 1, n, env.state_dim))
        obs[:, 0] = env.set_state(starts)
        physics[0] = env.get_state()
        self.replay.add(obs, actions, filled=0)
        obs, actions = self.replay.obs[-1], self.replay.actions[-1]
        for t in range(1, T + 1):
            actions[:, t] = self.act(obs[:, t - 1], rng)
            obs[:, t], _ = env.step(actions[:, t])
            physics[t] = env.get_state()
            self.replay.grow()
            self.transitions += n
            if len(self.replay) >= self.config.batch_size:
                self.debt += n / self.config.transitions_per_update
                while self.debt >= 1:
                    self.update(rng, generator)
                    self.debt -= 1
        return obs.transpose(1, 0, 2), actions.transpose(1, 0, 2), physics

    def add_episodes(self, episodes: list[dict[str, np.ndarray]]) -> None:
        """Episodes already on disk (a resumed collection), in the order they were collected."""
        self.replay.add(np.stack([e["observation"] for e in episodes]), np.stack([e["action"] for e in episodes]))
        self.transitions += sum(len(e["observation"]) - 1 for e in episodes)

    # -- state ---------------------------------------------------------------------------------------
    def _modules(self) -> dict[str, nn.Module]:
        return {"actor": self.actor, "critics": self.critics, "target_critics": self.target_critics, "rnd.predictor": self.rnd.predictor,
                "rnd.target": self.rnd.target}  # fmt: skip

    def _optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"actor": self.actor_optimizer, "critic": self.critic_optimizer, "rnd": self.rnd.optimizer}

    def save(self, folder: Path, rounds: int) -> None:
        """The state after ``rounds`` rounds, as ``explorer-<rounds>.safetensors`` + ``.json``; keeps the
        previous round's too (a kill while episodes are written resumes from it)."""
        tensors = {f"{name}.{k}": v for name, m in self._modules().items() for k, v in m.state_dict().items()}
        tensors |= self.rnd.obs_stats.tensors("obs_stats") | self.rnd.reward_stats.tensors("reward_stats")
        groups = {}
        for name, opt in self._optimizers().items():
            opt_tensors, groups[name] = optimizer_tensors(name, opt)
            tensors |= opt_tensors
        stem = folder / f"{STATE_PREFIX}{rounds:06d}"
        digest = save_tensors(stem.with_suffix(".safetensors"), tensors)
        write_json(stem.with_suffix(".json"), {"rounds": rounds, "transitions": self.transitions, "debt": self.debt, "param_groups": groups,
                                               "config": asdict(self.config), "sha256": digest})  # fmt: skip
        for old in folder.glob(f"{STATE_PREFIX}*.json"):
            index = old.stem[len(STATE_PREFIX):]
            if index.isdigit() and int(index) < rounds - 1:
                old.unlink()
                old.with_suffix(".safetensors").unlink(missing_ok=True)

    def load(self, folder: Path, rounds: int) -> None:
        """The state saved after ``rounds`` rounds (the replay is added separately, from the episodes)."""
        stem = folder / f"{STATE_PREFIX}{rounds:06d}"
        if not stem.with_suffix(".json").is_file():
            raise FastBFMError(f"{folder} holds {rounds} rounds of an RND collection but not the explorer's state after them "
                               f"({stem.name}.json): collect into a new folder")  # fmt: skip
        meta = read_json(stem.with_suffix(".json"), what="explorer state")
        if not isinstance(meta, dict) or meta.get("config") != asdict(self.config) or meta.get("rounds") != rounds or not isinstance(meta.get("sha256"), str):
            raise FastBFMError(f"{stem}.json is not this explorer's state after {rounds} rounds (other settings, or a foreign file): "
                               "collect into a new folder")  # fmt: skip
        tensors = load_tensors(stem.with_suffix(".safetensors"), meta.get("sha256"), what="explorer state")
        try:
            for name, module in self._modules().items():
                module.load_state_dict({k[len(name) + 1:]: v for k, v in tensors.items() if k.startswith(name + ".")})
            self.rnd.obs_stats.load(tensors, "obs_stats")
            self.rnd.reward_stats.load(tensors, "reward_stats")
            for name, opt in self._optimizers().items():
                restore_optimizer(name, opt, tensors, meta["param_groups"][name])
            self.debt = float(meta["debt"])
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise FastBFMError(f"corrupt explorer state {stem}: {str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}") from None


def _frozen_copy(module: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(module).requires_grad_(False)
