"""Latent racing (method ``race``): successive halving over latents, screened by the frozen critic,
then by LoLA's lookahead, then by full episodes.

fastbfm's own method, designed for the target of capturing most of the oracle's headroom within 20
episodes. The oracle finds its best latents among many drawn around z_r at several noise scales and
on the whole sphere, each judged on full episodes; LoLA and CMA-ES instead move one search
distribution with small steps. A race draws candidates as the oracle does, around the incumbent
latent (z_r at first), and spends its budget on few of them, chosen cheaply:

- screen (no environment step): 4096 latents around the incumbent and on the sphere, ranked by the
  critic's value at the bracket's first start state, psi(s0, pi(s0, z), z)^T w_r; the best 47 and the
  incumbent go on;
- stage 1: those 48, 250 steps each from that common start state, scored by LoLA's lookahead score
  (by default the episode's return estimated from the lookahead, ``score``): 12 episodes;
- stage 2 (the final): the best challenger and the incumbent, full episodes from 4 common start states:
  8 episodes.

The incumbent runs in every stage whatever its score, and is replaced only when the challenger's paired
returns on the final's start states beat its own with 95% confidence (one-sided Student-t lower bound of
the mean paired difference above zero; ``confidence=None``: a higher mean suffices), so the policy never
moves on a cheap score alone. A bracket spends 20 episodes; with a larger budget the next bracket races
around the new incumbent. A bracket that the rest of the budget cannot pay for whole is not started (at a
budget of 50 the race stops after 40 episodes). The evaluated policy is the incumbent.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from fastbfm.adapt.adapter import Adapter, run_seeds
from fastbfm.adapt.curve import AdaptationCurve
from fastbfm.adapt.lola import SCORES, lookahead_scores
from fastbfm.adapt.oracle import OracleConfig, candidate_latents
from fastbfm.adapt.safe import paired_lower_bound
from fastbfm.adapt.zero_shot import TaskPrompt
from fastbfm.bfm.protocol import BFM, training_discount
from fastbfm.envs.registry import Task
from fastbfm.errors import FastBFMError
from fastbfm.schemas import check_finite_fields


@dataclass(frozen=True)
class RaceConfig:
    episodes: int = 20
    """Adaptation budget in episodes of environment steps."""
    stages: tuple[tuple[int, int, int], ...] = ((48, 250, 1), (2, 1000, 4))
    """(latents, horizon, start states) per stage of a bracket: the first stage's latents are drawn, each
    later stage keeps the best of the previous one. Horizons below the episode length are scored with
    the critic's bootstrap; full episodes by their return."""
    sigmas: tuple[float, ...] = (0.1, 0.2, 0.4)
    """Noise scales of the candidates around the incumbent (per coordinate; latents have norm sqrt(d))."""
    sphere_fraction: float = 0.25
    """Share of the candidates drawn uniformly on the sphere."""
    screen: int = 4096
    """If positive: draw this many candidates and keep the first stage's count of them by the frozen
    critic's value alone at the bracket's first start state, psi(s0, pi(s0, z), z)^T w_r (no
    environment step spent)."""
    pessimism: float = 0.5
    score: str = "return"
    """How lookaheads are scored (``fastbfm.adapt.lola.SCORES``): the episode's return estimated from the
    lookahead, or the paper's discounted sum with the critic's bootstrap."""
    discount: float | None = None
    """Discount of the lookahead scores (rewards and the critic's bootstrap); default: the model's."""
    confidence: float | None = 0.95
    """Safe deployment: the best finalist replaces the incumbent only when the one-sided Student-t lower
    confidence bound of its mean paired difference with the incumbent, over the final's common start
    states, is above zero (Bonferroni over the finalists that challenge it); None: the higher mean return wins."""
    eval_episodes: int = 10
    eval_every: float = 0.0
    """Evaluate after every stage (0) or every this many episodes of budget."""
    @property
    def method_name(self) -> str:
        return "race" if self.confidence is not None else "race-unsafe"

    def __post_init__(self):
        check_finite_fields(self, "the race")
        if self.score not in SCORES:
            raise FastBFMError(f"the race's score is one of {', '.join(SCORES)}, got '{self.score}'")
        if self.screen < 0:
            raise FastBFMError("the race's critic screen is a number of latents >= 0")
        if not self.stages or any(len(stage) != 3 or min(stage) < 1 for stage in self.stages):
            raise FastBFMError("race stages are (latents, horizon, start states) triples of positive integers")
        counts = [stage[0] for stage in self.stages]
        if counts[0] < 2 or any(b > a for a, b in zip(counts, counts[1:])):
            raise FastBFMError(f"race stages must start with 2 or more latents and never grow: got {counts}")
        if self.confidence is not None and (not 0 < self.confidence < 1 or self.stages[-1][2] < 2):
            raise FastBFMError("a safe race needs 0 < confidence < 1 and a final stage on 2 or more start states (or confidence None)")
        if self.episodes < 0 or self.eval_episodes < 1 or not self.sigmas or min(self.sigmas) <= 0 or not 0 <= self.sphere_fraction <= 1:
            raise FastBFMError("a race needs episodes >= 0, eval_episodes >= 1, positive sigmas and 0 <= sphere_fraction <= 1")


class Race(Adapter):
    """One seed's race: the incumbent latent and the stage of the current bracket."""

    label = "race"

    def __init__(self, model: BFM, prompt: TaskPrompt, config: RaceConfig, seed: int, episode_length: int):
        super().__init__(model, seed, rollouts=config.stages[0][0] * config.stages[0][2], shared_start=False)
        self.config, self.episode_length = config, episode_length
        self.w = prompt.w.clone()
        self.gamma = training_discount(model) if config.discount is None else config.discount
        self.generator = torch.Generator().manual_seed(seed)
        self.incumbent = prompt.z.clone()
        self.latents = self.scores = None
        self.budget, self.spent, self.stage = config.episodes * episode_length, 0, 0
        if config.episodes > 0 and self.done:
            bracket = self._bracket_steps() / episode_length
            raise FastBFMError(f"a race's bracket costs {bracket:g} episodes, more than the budget of {config.episodes}: "
                               "give it more episodes or smaller stages")
        self._draw()

    def _bracket_steps(self) -> int:
        return sum(count * min(horizon, self.episode_length) * starts for count, horizon, starts in self.config.stages)

    @property
    def done(self) -> bool:
        """The rest of the budget cannot pay for a whole bracket: a bracket cut short of its final would
        spend episodes and never move the incumbent, and a final without its lookahead stage would pick
        finalists on the critic alone and decide on two noisy episodes (measured: worse on average)."""
        return self.stage == 0 and self._bracket_steps() > self.budget - self.spent

    def _draw(self) -> None:
        """A new bracket: the incumbent (index 0) and fresh candidates around it."""
        count = max(self.config.stages[0][0], self.config.screen + 1)
        draws = OracleConfig(num_latents=count - 1, sigmas=self.config.sigmas, sphere_fraction=self.config.sphere_fraction)
        self.latents = candidate_latents(self.model, self.incumbent, draws, self.generator)
        self.stage = 0
        self._layout()

    def _layout(self) -> None:
        count, horizon, starts = self.config.stages[self.stage]
        self.count, self.starts = count if self.stage == 0 else len(self.latents), starts
        self.horizon = min(horizon, self.episode_length)
        self.rollouts = self.count * starts

    def start_groups(self) -> np.ndarray:
        return np.repeat(np.arange(self.starts), self.count)  # every latent from every start state

    def propose(self, start_obs: np.ndarray) -> None:
        if len(self.latents) > self.count:  # the critic's screen, before the first stage
            with torch.no_grad():
                obs = torch.from_numpy(start_obs[:1]).expand(len(self.latents), -1)
                w = self.w.expand(len(self.latents), -1)
                value = self.model.q_value(obs, self.model.act(obs, self.latents, mean=True), self.latents, w, self.config.pessimism)
            best = torch.argsort(value[1:], descending=True)[: self.count - 1] + 1
            self.latents = self.latents[torch.cat([torch.zeros(1, dtype=torch.long), best.sort().values])]
        self.z = self.latents.repeat(self.starts, 1)

    def rollout_latents(self, t: int) -> torch.Tensor:
        return self.z

    def observe(self, obs, actions, rewards, next_obs) -> None:
        self.spent += self.rollouts * self.horizon
        if self.horizon >= self.episode_length:
            scores = rewards.sum(0)
        else:
            w = self.w.expand(self.rollouts, -1)
            remaining = None if self.config.score == "discounted" else self.episode_length - self.horizon
            scores = lookahead_scores(self.model, rewards, next_obs[-1], self.z, w, self.gamma, self.config.pessimism, remaining)
        self.per_start = scores.reshape(self.starts, self.count)
        self.scores = self.per_start.mean(0)

    def update(self) -> None:
        if not np.isfinite(self.scores).all():
            raise FastBFMError("non-finite scores")
        if self.stage + 1 < len(self.config.stages):
            keep = list(np.argsort(-self.scores, kind="stable")[: self.config.stages[self.stage + 1][0]])
            if 0 not in keep:  # the incumbent (index 0) always runs
                keep[-1] = 0
            self.latents = self.latents[sorted(keep)]
            self.stage += 1
            self._layout()
            return
        best = int(np.argmax(self.scores[1:])) + 1
        if self.config.confidence is None:
            replace = self.scores[best] > self.scores[0]
        else:
            level = 1 - (1 - self.config.confidence) / (len(self.scores) - 1)
            replace = paired_lower_bound(self.per_start[:, best] - self.per_start[:, 0], level) > 0
        if replace:
            self.incumbent = self.latents[best].clone()
        self._draw()

    def current_latent(self) -> torch.Tensor:
        return self.incumbent


def race_seeds(model: BFM, task: Task, prompt: TaskPrompt, config: RaceConfig, seeds: list[int], progress: bool = False) -> list[AdaptationCurve]:
    """Independent races, one per seed, in lockstep (one batch of simulations)."""
    return run_seeds(Race, model, task, prompt, config, seeds, progress, f"{config.method_name} {task.full_name}")
