"""Domains and tasks as data: ``"domain:task"`` names resolve to a :class:`Task` through one registry."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol

import numpy as np

from fastbfm.errors import FastBFMError


class Fields(Protocol):
    """Anything that exposes MuJoCo data fields as arrays: one ``MjData`` or a batch's (N, ...) views."""

    geom_xpos: np.ndarray
    ctrl: np.ndarray


# A reward reads MuJoCo fields and returns one value per simulation. The same function serves a single
# dm_control physics (scalars) and a batch of simulations (arrays), so both paths agree by construction.
RewardFn = Callable[[Fields], np.ndarray]


@dataclass(frozen=True)
class Task:
    domain: str
    name: str
    reward: RewardFn
    description: str = ""
    decorate: Callable[[object], None] | None = None
    """Optional visual setup of a dm_control physics for this task (e.g. placing a target marker)."""

    @property
    def full_name(self) -> str:
        return f"{self.domain}:{self.name}"


@dataclass(frozen=True)
class Domain:
    """A MuJoCo model plus how to observe it and where episodes start."""

    name: str
    xml_path: str
    observation_dim: int
    action_dim: int
    episode_length: int
    n_sub_steps: int
    observe: Callable[[np.ndarray, np.ndarray], np.ndarray]
    """(qpos, qvel) with leading batch axes -> flat observation, in dm_control's key order."""
    sample_initial_state: Callable[[np.random.Generator | np.random.RandomState, int], np.ndarray]
    """(rng, n) -> (n, qpos+qvel) physics states, the reset distribution of the domain."""
    tasks: dict[str, Task] = field(default_factory=dict)

    def task(self, name: str) -> Task:
        if name not in self.tasks:
            raise FastBFMError(
                f"unknown task '{self.name}:{name}'; tasks of {self.name}: {', '.join(sorted(self.tasks))}"
            )
        return self.tasks[name]


_DOMAINS: dict[str, Domain] = {}


def register_domain(domain: Domain) -> Domain:
    _DOMAINS[domain.name] = domain
    return domain


def get_domain(name: str) -> Domain:
    _ensure_builtin_domains()
    if name not in _DOMAINS:
        raise FastBFMError(f"unknown domain '{name}'; known domains: {', '.join(sorted(_DOMAINS))}")
    return _DOMAINS[name]


def get_task(full_name: str) -> Task:
    """Resolve ``"domain:task"`` (e.g. ``point_mass_maze:reach_top_left``)."""
    domain_name, sep, task_name = full_name.partition(":")
    if not sep or not domain_name or not task_name:
        raise FastBFMError(f"task names are written 'domain:task' (e.g. point_mass_maze:reach_top_left), got '{full_name}'")
    return get_domain(domain_name).task(task_name)


def domain_for_dims(obs_dim: int, action_dim: int) -> str | None:
    """The one registered domain with these observation and action sizes, if exactly one matches."""
    _ensure_builtin_domains()
    matches = [d.name for d in _DOMAINS.values() if (d.observation_dim, d.action_dim) == (obs_dim, action_dim)]
    return matches[0] if len(matches) == 1 else None


def list_domains() -> list[str]:
    _ensure_builtin_domains()
    return sorted(_DOMAINS)


def list_tasks(domain: str | None = None) -> list[str]:
    names = [domain] if domain else list_domains()
    return [t.full_name for d in names for t in get_domain(d).tasks.values()]


def _ensure_builtin_domains() -> None:
    # Importing a domain module registers it; done lazily so the registry has no import cycle.
    from fastbfm.envs import point_mass_maze  # noqa: F401
