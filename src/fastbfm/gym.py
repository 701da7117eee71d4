"""Gymnasium interop: every task as a Gymnasium environment, and a BFM with a latent as a policy.

    import gymnasium as gym
    import fastbfm.gym  # registers fastbfm/<domain>-<task>-v0 for the 16 built-in tasks

    env = gym.make("fastbfm/walker-run-v0")
    policy = fastbfm.gym.LatentPolicy(model, z)
    obs, info = env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step(policy(obs))

``FastBFMEnv("walker:my_rewards:walk_backward")`` wraps any task, user rewards included. Episodes end by
truncation after the domain's 1000 steps (the tasks have no terminal states).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from fastbfm.envs.dmc import make_env
from fastbfm.envs.registry import Task, get_domain, get_task, list_tasks


def env_id(task_name: str) -> str:
    domain, task = task_name.split(":", 1)
    return f"fastbfm/{domain}-{task}-v0"


class FastBFMEnv(gym.Env):
    """A registry task behind Gymnasium's API, stepping the same dm_control environment as ``make_env``."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(self, task: str | Task, render_mode: str | None = None, width: int = 320, height: int = 240):
        self.task = get_task(task)
        domain = get_domain(self.task.domain)
        self.observation_space = spaces.Box(-np.inf, np.inf, (domain.observation_dim,), np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (domain.action_dim,), np.float32)
        self.render_mode, self._size = render_mode, (height, width)
        self._env = None

    def reset(self, *, seed: int | None = None, options=None):
        super().reset(seed=seed)
        if self._env is None or seed is not None:
            # dm_control seeds its task RNG at construction: a seeded reset builds a seeded environment.
            self._env = make_env(self.task, seed=int(self.np_random.integers(2**31)))
        ts = self._env.reset()
        return self._obs(ts), {}

    def step(self, action):
        if self._env is None:
            raise RuntimeError("call reset() before step()")
        ts = self._env.step(np.asarray(action, dtype=np.float64))
        return self._obs(ts), float(ts.reward), False, ts.last(), {}

    def render(self):
        if self.render_mode == "rgb_array" and self._env is not None:
            return self._env.physics.render(*self._size, camera_id=0)
        return None

    @property
    def physics(self):
        """The dm_control physics (state save and restore: ``physics.get_state()`` / ``set_state``)."""
        return self._env.physics

    @staticmethod
    def _obs(ts) -> np.ndarray:
        return np.asarray(ts.observation["observations"], dtype=np.float32)


class LatentPolicy:
    """``policy(obs) -> action``: the BFM's deterministic policy for latent ``z``, on numpy in and out."""

    def __init__(self, model, z: torch.Tensor):
        self.model, self.z = model, torch.as_tensor(z, dtype=torch.float32).reshape(1, -1)

    @torch.inference_mode()
    def __call__(self, obs: np.ndarray) -> np.ndarray:
        obs = torch.as_tensor(np.asarray(obs, dtype=np.float32))
        batched = obs.dim() == 2
        obs = obs if batched else obs[None]
        action = self.model.act(obs, self.z.expand(len(obs), -1), mean=True).numpy()
        return action if batched else action[0]


def run_adapter(adapter, env: gym.Env, episodes: int, episode_length: int = 1000, seed: int = 0) -> int:
    """Adapt with any Gymnasium environment, one rollout at a time: the rounds of a
    :class:`~fastbfm.adapt.adapter.Adapter` (which :func:`~fastbfm.adapt.adapter.run_adapters` drives in
    one batch of simulations), for a budget of ``episodes`` episodes of ``episode_length`` steps. Each
    round resets its rollouts with new seeds, the same one for rollouts of one start group.
    Returns the environment steps spent.

    Reset-free rounds (``adapter.resume``) branch several rollouts from one mid-episode state, which needs a
    simulator with state restore: they are refused here (``run_adapters`` runs them)."""
    seeds = np.random.default_rng([seed, 13])
    spent = 0
    while True:
        H, n = adapter.next_horizon(), adapter.rollouts
        if spent + n * H > episodes * episode_length or adapter.done:
            return spent
        if adapter.resume:
            raise ValueError("reset-free rounds branch rollouts from one mid-episode state: run them with fastbfm.adapt.adapter.run_adapters")
        # fixed start states (a safe gate's duels): the same reset seeds in every such round
        round_seed = int(np.random.default_rng([adapter.seed, 2]).integers(2**31)) if adapter.fixed_starts else int(seeds.integers(2**31))
        rollout_seeds = [round_seed + int(group) for group in adapter.start_groups()]
        start_obs = {s: env.reset(seed=s)[0] for s in set(rollout_seeds)}
        first = np.stack([start_obs[s] for s in rollout_seeds]).astype(np.float32)
        adapter.propose(first)
        obs = np.empty((H + 1, n, first.shape[-1]), np.float32)
        actions, rewards = np.empty((H, n, *env.action_space.shape), np.float32), np.empty((H, n))
        obs[0] = first
        for i, rollout_seed in enumerate(rollout_seeds):
            env.reset(seed=rollout_seed)
            for t in range(H):
                with torch.inference_mode():
                    latents = adapter.rollout_latents(t)
                    if latents is None:
                        raw = adapter.rollout_policy(obs[t, i : i + 1], t)
                    else:
                        raw = adapter.model.act(torch.from_numpy(obs[t, i : i + 1]), latents[i : i + 1], mean=True).numpy()
                actions[t, i] = adapter.explore(raw, t)[0]
                obs[t + 1, i], rewards[t, i], *_ = env.step(actions[t, i])
        adapter.observe(obs[:-1], actions, rewards, obs[1:])
        adapter.update()
        spent += n * H


def register_all() -> list[str]:
    ids = []
    for name in list_tasks():
        ids.append(env_id(name))
        if ids[-1] not in gym.registry:
            gym.register(ids[-1], entry_point=FastBFMEnv, kwargs={"task": name}, max_episode_steps=None)
    return ids


register_all()
