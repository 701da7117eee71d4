"""The one interface of every adaptation method, and the loop that drives it in simulation.

An :class:`Adapter` is one run of a method with one seed on a frozen BFM. It owns no environment: it
proposes what to roll out, observes the transitions with their rewards, and updates. A round is

1. ``next_horizon()``: how many steps the round's ``rollouts`` simulations will run, and from where:
   ``start_groups()`` gives each rollout a group, and each group starts from one fresh start state
   drawn with ``start_rng`` (``shared_start``: one group; else one per rollout); ``resume``: all
   rollouts start from where the first rollout of the previous round ended;
2. ``propose(start_obs)``: choose the round's latents (or policy) knowing where the rollouts start;
3. for each step, ``rollout_latents(t)`` (the latents acting, so that the driver batches one policy
   call for all runs) or, when that is None, ``rollout_policy(obs, t)``; then ``explore(actions, t)``;
4. ``observe(obs, actions, rewards, next_obs)``: the round's transitions, time-major (H, rollouts, ...);
5. ``update()``: learn from them.

Between rounds, ``current_latent()`` (or ``policy(obs)`` when no single latent is the policy) is what
adaptation has produced so far. :func:`run_adapters` drives runs of one method in lockstep, all their
simulations in one batch, stops when the next round would exceed the budget of environment steps (or
the method is ``done``), and
evaluates every run on its seed's fixed episodes (:class:`~fastbfm.rollout.SeedEvaluator`).
A user with another simulator, or a real system, writes the same loop around the same adapters.
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod

import numpy as np
import torch
from tqdm.auto import tqdm

from fastbfm.adapt.curve import AdaptationCurve, CurveRecorder
from fastbfm.bfm.protocol import BFM
from fastbfm.envs.batch import BatchedEnv
from fastbfm.envs.registry import Task, get_domain
from fastbfm.errors import FastBFMError
from fastbfm.rollout import SeedEvaluator
from fastbfm.schemas import check_seed


class Adapter(ABC):
    """One seed's run of an adaptation method on a frozen BFM (see the module's docstring)."""

    label: str = "adaptation"
    """The method's name in errors and progress bars."""

    def __init__(self, model: BFM, seed: int, rollouts: int, shared_start: bool):
        self.model, self.seed = model, check_seed(seed)
        self.rollouts, self.shared_start = rollouts, shared_start
        self.start_rng = np.random.default_rng([seed, 1])
        """Draws the start states of the rounds that do not resume."""

    def next_horizon(self) -> int:
        """Steps of the next round."""
        return self.horizon

    def start_groups(self) -> np.ndarray:
        """(rollouts,) group of each rollout of the next round; a group's rollouts share a start state
        (common random numbers), groups numbered 0, 1, ... in order of first appearance."""
        return np.zeros(self.rollouts, int) if self.shared_start else np.arange(self.rollouts)

    @property
    def done(self) -> bool:
        """The method has nothing worth spending the rest of its budget on (a race whose next bracket
        does not fit); the drivers then stop early."""
        return False

    @property
    def resume(self) -> bool:
        """The next round continues from where the previous round's first rollout ended."""
        return False

    @property
    def fixed_starts(self) -> bool:
        """The next round's start groups index a fixed set of start states, the same in every such round
        (drawn from the seed alone: a safe gate's duels pair returns across rounds)."""
        return False

    @abstractmethod
    def propose(self, start_obs: np.ndarray) -> None:
        """Choose the next round's latents or policy; ``start_obs`` (rollouts, obs_dim)."""

    def rollout_latents(self, t: int) -> torch.Tensor | None:
        """(rollouts, z_dim): the latents acting at step t of the round, or None if the policy is not pi(., z)."""
        return None

    def rollout_policy(self, obs: np.ndarray, t: int) -> np.ndarray:
        """Actions at step t when ``rollout_latents`` is None."""
        raise NotImplementedError(f"{type(self).__name__} acts through rollout_latents")

    def explore(self, actions: np.ndarray, t: int) -> np.ndarray:
        """Exploration added to the round's actions (none by default)."""
        return actions

    @abstractmethod
    def observe(self, obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray, next_obs: np.ndarray) -> None:
        """The round's transitions, time-major: obs (H, rollouts, obs_dim), rewards (H, rollouts), ..."""

    @abstractmethod
    def update(self) -> None:
        """Learn from what was observed; errors name the problem (non-finite scores, a diverged latent)."""

    def initial_latent(self) -> torch.Tensor | None:
        """The policy before any adaptation, reported at budget 0."""
        return self.current_latent()

    @abstractmethod
    def current_latent(self) -> torch.Tensor | None:
        """The adapted latent (z_dim,), or None when the policy is not one latent of the frozen model."""

    def policy(self, obs: np.ndarray) -> np.ndarray:
        """The adapted deterministic policy's actions; by default pi(obs, current_latent())."""
        with torch.no_grad():
            z = self.current_latent().expand(len(obs), -1)
            return self.model.act(torch.from_numpy(obs), z, mean=True).numpy()


def run_adapters(
    adapters: list[Adapter], task: Task, episodes: int, eval_episodes: int, eval_every: float = 0.0, progress: bool = False, name: str | None = None
) -> list[AdaptationCurve]:
    """Runs of one method (one adapter per seed, same configuration) in lockstep, with a budget of
    ``episodes`` episodes of environment steps each; one curve per run, ``curve.z`` its final latent."""
    if not adapters:
        raise FastBFMError("adaptation needs at least one run (one adapter per seed)")
    first = adapters[0]
    model = first.model
    domain = get_domain(task.domain)
    T, S = domain.episode_length, len(adapters)
    budget = episodes * T
    envs: dict[int, BatchedEnv] = {}  # one batch of simulations per round size
    evaluate = SeedEvaluator(model, task, [a.seed for a in adapters], eval_episodes)
    label = f"{first.label} on {task.full_name}"

    last: list = [None, None]  # the latents last evaluated and their returns

    def returns_of(latents: list[torch.Tensor | None]) -> tuple[np.ndarray, list[torch.Tensor | None]]:
        latents = [None if z is None else z.detach().clone() for z in latents]
        if all(z is not None for z in latents):
            if last[0] is not None and all(torch.equal(z, y) for z, y in zip(latents, last[0])):
                return last[1], latents  # the same policies on the same episodes: the same returns, bit for bit
            returns = evaluate(torch.stack(latents))
            last[:] = latents, returns
        else:
            returns = evaluate.policies(lambda i, obs: adapters[i].policy(obs))
        if not np.isfinite(returns).all():
            raise FastBFMError(f"{label}: non-finite evaluation returns")
        return returns, latents

    def current() -> tuple[np.ndarray, list[torch.Tensor | None]]:
        return returns_of([a.current_latent() for a in adapters])

    with torch.inference_mode():
        recorder = CurveRecorder(eval_every, returns_of([a.initial_latent() for a in adapters]))
    compute, spent, rounds, chain = 0.0, 0, 0, None
    bar = tqdm(total=episodes, desc=name or f"{first.label} {task.full_name}", unit="ep", disable=not progress)
    while True:
        H, n = first.next_horizon(), first.rollouts
        if any(a.rollouts != n or a.next_horizon() != H for a in adapters):
            raise FastBFMError("adapters run in lockstep must share their rounds (one method, one configuration)")
        if spent + n * H > budget or first.done:
            if rounds == 0 and episodes > 0:
                # reporting the zero-shot start as the method's result would pass for "no gain"
                least = f"at least {math.ceil(n * H / T)} episodes" if spent + n * H > budget else "a larger budget"
                raise FastBFMError(f"{label}: a budget of {episodes} episodes is less than one round of the method "
                                   f"({n} rollouts of {H} steps = {n * H / T:g} episodes); give it {least}")
            break
        start = time.perf_counter()
        if n not in envs:
            envs[n] = BatchedEnv(task, num_envs=S * n)
        env = envs[n]
        with torch.inference_mode():
            observations, actions, rewards = _rollout(adapters, env, domain, H, chain)
        spent += n * H
        for i, adapter in enumerate(adapters):
            part = slice(i * n, (i + 1) * n)
            try:
                adapter.observe(observations[:-1, part], actions[:, part], rewards[:, part], observations[1:, part])
                adapter.update()
            except FastBFMError as error:
                raise FastBFMError(f"{label}: {error} (round {rounds})") from error
        if any(a.resume for a in adapters):  # where each run's first rollout ended
            chain = env.get_state()[::n].copy()
        compute += time.perf_counter() - start
        with torch.inference_mode():
            recorder.step(spent / T, current)
        rounds += 1
        bar.update(n * H / T)
    bar.close()
    with torch.inference_mode():
        curves = recorder.finish(spent / T, current, compute, sum(e.sim_seconds for e in envs.values()))
    for curve, adapter in zip(curves, adapters):
        z = adapter.current_latent()
        curve.z = None if z is None else z.detach().clone()
    return curves


def run_seeds(
    adapter_type: type[Adapter], model: BFM, task: Task, prompt, config, seeds: list[int], progress: bool = False, name: str | None = None
) -> list[AdaptationCurve]:
    """One run of ``adapter_type(model, prompt, config, seed, episode_length)`` per seed, in lockstep, with
    the config's budget and evaluation schedule (``episodes``, ``eval_episodes``, ``eval_every``)."""
    T = get_domain(task.domain).episode_length
    runs = [adapter_type(model, prompt, config, seed, T) for seed in seeds]
    if getattr(config, "safe", None) is not None and runs and runs[0].initial_latent() is not None:
        from fastbfm.adapt.safe import SafeGate  # a wrapper of adapters: imports this module

        runs = [SafeGate(run, config.safe, config.episodes, T) for run in runs]
    return run_adapters(runs, task, config.episodes, config.eval_episodes, config.eval_every, progress, name)


def _rollout(adapters: list[Adapter], env: BatchedEnv, domain, H: int, chain: np.ndarray | None) -> tuple[np.ndarray, ...]:
    """One round of every adapter in one batch of simulations: observations (H+1, N, obs_dim), actions, rewards."""
    n = adapters[0].rollouts
    starts = []
    for i, a in enumerate(adapters):
        if a.resume:
            starts.append(np.repeat(chain[i : i + 1], n, axis=0))
        elif a.fixed_starts:
            groups = a.start_groups()
            starts.append(domain.sample_initial_state(np.random.default_rng([a.seed, 2]), int(groups.max()) + 1)[groups])
        else:
            groups = a.start_groups()
            starts.append(domain.sample_initial_state(a.start_rng, int(groups.max()) + 1)[groups])
    obs = env.set_state(np.concatenate(starts))
    for i, a in enumerate(adapters):
        a.propose(obs[i * n : (i + 1) * n])
    N = env.num_envs
    observations = np.empty((H + 1, N, obs.shape[-1]), np.float32)
    actions, rewards = np.empty((H, N, domain.action_dim), np.float32), np.empty((H, N))
    observations[0] = obs
    for t in range(H):
        latents = [a.rollout_latents(t) for a in adapters]
        if all(z is not None for z in latents):
            raw = adapters[0].model.act(torch.from_numpy(observations[t]), torch.cat(latents), mean=True).numpy()
        else:
            raw = np.concatenate([a.rollout_policy(observations[t][i * n : (i + 1) * n], t) for i, a in enumerate(adapters)])
        actions[t] = np.concatenate([a.explore(raw[i * n : (i + 1) * n], t) for i, a in enumerate(adapters)])
        observations[t + 1], rewards[t] = env.step(actions[t])
    return observations, actions, rewards
