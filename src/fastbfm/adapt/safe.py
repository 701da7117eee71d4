"""Safe deployment: the latent a user deploys changes only on evidence gathered within the budget.

A latent-search method explores: its current latent (LoLA's mu, CMA-ES's mean, ReLA's latent) may be
worse than zero-shot at any time. :class:`SafeGate` wraps such a method and keeps a separate **deployed**
latent, z_r at first, which is what the run reports and evaluates. The budget is split: the method runs
its own rounds for ``budget - starts * (duels + 1)`` episodes, and ``duels`` times (evenly over that
budget, the last at its end) the gate runs a **duel**: the method's current latent (the challenger) plays
one full episode from each of ``starts`` fixed start states (the gate's own, drawn from the run's seed,
never the evaluation's), against the deployed latent's returns from the same start states (measured once,
in the first duel, and kept: a latent's return from a start state does not change). The deployed latent
becomes the challenger only when the one-sided Student-t lower confidence bound of the mean paired
difference is above zero,

    mean(d) - t_{1 - alpha / duels, starts - 1} * std(d) / sqrt(starts) > 0,   alpha = 1 - confidence,

so over a run's duels (Bonferroni) the chance that a latent no better than the deployed one replaces it is
at most alpha when the paired differences are near normal. Evaluation episodes never inform the choice:
the gate sees only its duels' returns. What it costs: the duels' episodes (12 of 20 at the defaults are
the method's) and the gains too small to show on ``starts`` paired episodes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats

from fastbfm.adapt.adapter import Adapter
from fastbfm.errors import FastBFMError
from fastbfm.schemas import check_finite_fields


@dataclass(frozen=True)
class SafeConfig:
    confidence: float = 0.95
    """Probability, over a run, that no duel replaces the deployed latent by one that is no better."""
    starts: int = 4
    """Fixed start states of the duels: each duel costs this many episodes (twice in the first, which
    also measures z_r)."""
    duels: int = 1
    """Duels over the budget, evenly spaced in the method's own episodes, the last at the end."""

    def __post_init__(self):
        check_finite_fields(self, "the safe gate")
        if not 0 < self.confidence < 1 or self.starts < 2 or self.duels < 1:
            raise FastBFMError("a safe gate needs 0 < confidence < 1, starts >= 2 (a paired test needs two pairs) and duels >= 1")

    def cost(self) -> int:
        """Episodes of the budget that the duels spend."""
        return self.starts * (self.duels + 1)


def paired_lower_bound(differences: np.ndarray, confidence: float) -> float:
    """One-sided Student-t lower confidence bound of the mean of paired differences."""
    d = np.asarray(differences, float)
    if len(d) < 2:
        raise FastBFMError("a paired test needs at least two pairs")
    spread = d.std(ddof=1) / np.sqrt(len(d))
    return float(d.mean() - stats.t.ppf(confidence, len(d) - 1) * spread)


class SafeGate(Adapter):
    """A latent-search method's run with a deployed latent that moves only on a won duel (see the module)."""

    def __init__(self, inner: Adapter, config: SafeConfig, episodes: int, episode_length: int):
        super().__init__(inner.model, inner.seed, inner.rollouts, inner.shared_start)
        self.inner, self.config, self.T = inner, config, episode_length
        self.label = f"{inner.label} (safe)"
        own = episodes - config.cost()
        if episodes > 0 and own < 1:
            raise FastBFMError(f"the safe gate's duels cost {config.cost()} episodes, the whole budget of {episodes}: "
                               "give more episodes, fewer duel start states (--safe-starts) or --no-safe")
        first_round = inner.rollouts * inner.next_horizon()
        if episodes > 0 and first_round > own * self.T:
            raise FastBFMError(f"{inner.label}'s first round ({first_round / self.T:g} episodes) does not fit the {own} episodes its safe "
                               f"gate leaves it (the duels cost {config.cost()}): give at least {config.cost() + -(-first_round // self.T)} "
                               "episodes, or --no-safe")
        self.checkpoints = [round(own * self.T * (i + 1) / config.duels) for i in range(config.duels)] if episodes > 0 else []
        first = inner.initial_latent()
        if first is None:
            raise FastBFMError(f"{inner.label}'s policy is not one latent of the model: a safe gate cannot deploy it (use --no-safe)")
        self.deployed = first.detach().clone()
        self.deployed_returns: np.ndarray | None = None  # on the duel start states
        self.inner_spent = self.spent = self.duels_done = 0
        self.switches: list[dict] = []
        """Each duel: budget spent when it ran, mean paired difference, lower bound, and whether it switched."""
        self._plan()

    # the schedule: the method's rounds until its next checkpoint, then a duel
    def _plan(self) -> None:
        self.dueling = False
        inner = self.inner
        if self.duels_done < len(self.checkpoints):
            cost = inner.rollouts * inner.next_horizon()
            if not inner.resume and (inner.done or self.inner_spent + cost > self.checkpoints[self.duels_done]):
                self.dueling = True
                self.challenger = inner.current_latent().detach().clone()
                self.measure_deployed = self.deployed_returns is None
                self.rollouts = self.config.starts * (2 if self.measure_deployed else 1)
                self.horizon = self.T
                return
        # the method's own round (or, with no duel left, the round that would follow: the gate is done)
        self.rollouts, self.horizon = inner.rollouts, inner.next_horizon()

    def next_horizon(self) -> int:
        return self.horizon

    @property
    def done(self) -> bool:
        return self.duels_done >= len(self.checkpoints)

    @property
    def resume(self) -> bool:
        return not self.dueling and self.inner.resume

    @property
    def fixed_starts(self) -> bool:
        return self.dueling

    def start_groups(self) -> np.ndarray:
        if self.dueling:  # challenger (and the deployed latent) from each of the duel's start states
            return np.tile(np.arange(self.config.starts), self.rollouts // self.config.starts)
        return self.inner.start_groups()

    def propose(self, start_obs: np.ndarray) -> None:
        if self.dueling:
            latents = [self.challenger, self.deployed] if self.measure_deployed else [self.challenger]
            self.z = torch.stack(latents).repeat_interleave(self.config.starts, 0)
        else:
            self.inner.propose(start_obs)

    def rollout_latents(self, t: int) -> torch.Tensor | None:
        return self.z if self.dueling else self.inner.rollout_latents(t)

    def rollout_policy(self, obs: np.ndarray, t: int) -> np.ndarray:
        return self.inner.rollout_policy(obs, t)

    def explore(self, actions: np.ndarray, t: int) -> np.ndarray:
        return actions if self.dueling else self.inner.explore(actions, t)

    def observe(self, obs, actions, rewards, next_obs) -> None:
        if not self.dueling:
            self.inner_spent += len(rewards) * rewards.shape[1]
            self.spent += len(rewards) * rewards.shape[1]
            self.inner.observe(obs, actions, rewards, next_obs)
            return
        returns = rewards.sum(0).reshape(-1, self.config.starts)
        if not np.isfinite(returns).all():
            raise FastBFMError("non-finite duel returns")
        if self.measure_deployed:
            self.deployed_returns = returns[1]
        differences = returns[0] - self.deployed_returns
        bound = paired_lower_bound(differences, 1 - (1 - self.config.confidence) / self.config.duels)
        switch = bound > 0
        self.spent += self.rollouts * self.T
        self.switches.append({"episodes": self.spent / self.T, "difference": float(differences.mean()), "lower_bound": bound, "switched": bool(switch)})
        if switch:
            self.deployed, self.deployed_returns = self.challenger, returns[0]
        self.duels_done += 1

    def update(self) -> None:
        if not self.dueling:
            self.inner.update()
        self._plan()

    def initial_latent(self) -> torch.Tensor:
        return self.inner.initial_latent()

    def current_latent(self) -> torch.Tensor:
        return self.deployed

    def explored_latent(self) -> torch.Tensor | None:
        """The method's own current latent, deployed or not."""
        return self.inner.current_latent()
