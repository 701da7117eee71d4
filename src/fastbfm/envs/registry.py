"""Domains and tasks as data: ``"domain:task"`` names resolve to a :class:`Task` through one registry.

A task name is ``domain:task`` for a built-in task, or ``domain:module.path:function`` for a reward
written by the user (see :func:`fastbfm.envs.user_task`), e.g. ``walker:my_rewards:walk_backward``.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
import sys
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Protocol

import numpy as np

from fastbfm.envs.user_reward import UserReward, UserVectorReward
from fastbfm.errors import FastBFMError


class Fields(Protocol):
    """MuJoCo data fields as arrays: one ``MjData`` (no batch axis) or a batch's live (N, ...) views.

    Vectorised rewards and observations read only these names, so one function serves both.
    """

    qpos: np.ndarray
    qvel: np.ndarray
    act: np.ndarray
    ctrl: np.ndarray
    xpos: np.ndarray
    xmat: np.ndarray
    geom_xpos: np.ndarray
    sensordata: np.ndarray
    subtree_angmom: np.ndarray


# A vectorised reward reads MuJoCo fields and returns one value per simulation. The same function
# serves a single physics (scalars) and a batch of simulations (arrays).
RewardFn = Callable[[Fields], np.ndarray]
# A dm_control-style reward: a function of one dm_control ``Physics`` of the domain, returning a float.
PhysicsRewardFn = Callable[[Any], float]


@dataclass(frozen=True)
class Task:
    """A reward on a domain.

    Built-in tasks have a vectorised ``reward`` (tested equal to ``reference``) and a ``reference``:
    a factory ``random -> dm_control Task`` whose ``get_reward`` is dm_control's own (standard tasks) or
    the reference codebases' definition (custom tasks). User tasks may give only ``physics_reward``;
    batched code then computes it one simulation at a time.
    """

    domain: str
    name: str
    reward: RewardFn | None = None
    description: str = ""
    reference: Callable[[Any], Any] | None = None
    physics_reward: PhysicsRewardFn | None = None
    decorate: Callable[[object], None] | None = None
    """Optional visual setup of a dm_control physics for this task (e.g. placing a target marker)."""

    def __post_init__(self):
        if self.reward is None and self.physics_reward is None:
            raise FastBFMError(f"task {self.full_name} needs a vectorised reward or a physics reward")

    @property
    def full_name(self) -> str:
        return f"{self.domain}:{self.name}"

    @property
    def vectorized(self) -> bool:
        return self.reward is not None


@dataclass(frozen=True)
class StatePartition:
    """A partition of a domain's states that dataset and model cards report shares of (the maze's rooms)."""

    name: str
    """What one part is called, e.g. ``room``."""
    shares: Callable[[np.ndarray], dict[str, float]]
    """Observations (N, obs_dim) -> the share of them in each part, by part name."""


@dataclass(frozen=True)
class Domain:
    """A MuJoCo model plus how to observe it, where episodes start, how to explore it, and how to show it.

    Everything fastbfm knows of a domain is here: a new domain is one module of ``fastbfm.envs`` that
    calls :func:`register_domain` (plus its model file), found by the registry on first use.
    """

    name: str
    observation_dim: int
    action_dim: int
    episode_length: int
    n_sub_steps: int
    make_physics: Callable[[], Any]
    """A new dm_control ``Physics`` of the domain's model (the domain's own Physics subclass)."""
    observe: Callable[[Fields], np.ndarray]
    """Fields -> flat observation, in dm_control's key order; vectorised over leading axes."""
    sample_initial_state: Callable[[np.random.Generator | np.random.RandomState, int], np.ndarray]
    """(rng, n) -> (n, state_dim) physics states (qpos, qvel, act): the reset distribution of the domain."""
    base_task: Callable[[Any], Any]
    """``random -> dm_control Task`` that gives resets and observations; user rewards subclass it."""
    exploration_features: Callable[[np.ndarray], np.ndarray]
    """Observations (..., obs_dim) -> a few task-relevant features that the explorer grids into cells."""
    exploration_cell: tuple[float, ...]
    """Cell size per exploration feature."""
    exploration_names: tuple[str, ...]
    """A short name per exploration feature (dataset cards plot their histograms)."""
    bound_fields: tuple[str, ...]
    """MuJoCo data fields that observations and built-in rewards read (bound once in a batch)."""
    tasks: dict[str, Task] = field(default_factory=dict)
    description: str = ""
    collect_recipe: dict[str, Any] = field(default_factory=dict)
    """The default exploration recipe: fields of ``fastbfm.data.collect.CollectConfig`` (the shipped
    models were trained on data collected with it)."""
    camera: str | int = 0
    """The MuJoCo camera (name or index) that keeps the body in view in videos."""
    partition: StatePartition | None = None
    """Optional shares of states that dataset and model cards report."""
    dataset_notes: Callable[[np.ndarray, np.ndarray, np.ndarray], list[str]] | None = None
    """Optional ``(obs, next_obs, episode_starts) -> lines`` that the dataset card adds: what the domain's
    tasks need from the data beyond the features (e.g. whether the quadruped's episodes right themselves)."""

    def task(self, name: str) -> Task:
        if name not in self.tasks:
            if ":" in name or "." in name:
                return user_task(self.name, name)
            raise FastBFMError(
                f"unknown task '{self.name}:{name}'; tasks of {self.name}: {', '.join(sorted(self.tasks))} "
                "(or a reward of your own: domain:module:function)"
            )
        return self.tasks[name]


_DOMAINS: dict[str, Domain] = {}
_SUPPORT_MODULES = ("batch", "dmc", "registry", "suite_domains")
"""Modules of ``fastbfm.envs`` that are not domains."""


def register_domain(domain: Domain) -> Domain:
    _DOMAINS[domain.name] = domain
    return domain


def get_domain(name: str) -> Domain:
    _ensure_builtin_domains()
    if name not in _DOMAINS:
        raise FastBFMError(f"unknown domain '{name}'; known domains: {', '.join(sorted(_DOMAINS))}")
    return _DOMAINS[name]


def get_task(full_name: str) -> Task:
    """Resolve ``"domain:task"`` (e.g. ``walker:run``) or ``"domain:module:function"`` (a user reward)."""
    if isinstance(full_name, Task):
        return full_name
    domain_name, sep, task_name = full_name.partition(":")
    if not sep or not domain_name or not task_name:
        raise FastBFMError(f"task names are written 'domain:task' (e.g. walker:run), got '{full_name}'")
    return get_domain(domain_name).task(task_name)


def user_task(domain_name: str, spec: str) -> Task:
    """A task from a user's reward, ``spec`` = ``module.path:attribute`` (importable, or in the working folder).

    The attribute is either a :class:`Task` of this domain, or a function ``reward(physics) -> float`` in
    dm_control's style, called with the domain's dm_control ``Physics`` (e.g. ``physics.torso_height()``).
    """
    module_name, sep, attribute = spec.rpartition(":")
    if not sep or not module_name or not attribute:
        raise FastBFMError(f"a user reward is written domain:module:function (e.g. walker:my_rewards:walk_backward), got '{domain_name}:{spec}'")
    if "" not in sys.path and "." not in sys.path:
        sys.path.append("")  # the working folder, as `python -m` would have it
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise FastBFMError(f"cannot import the reward module '{module_name}' of task '{domain_name}:{spec}': {e}") from e
    except Exception as e:  # a user module failing at import: report it on one line
        raise FastBFMError(f"the reward module '{module_name}' failed to import: {type(e).__name__}: {e}") from e
    fn = getattr(module, attribute, None)
    if fn is None:
        raise FastBFMError(f"the reward module '{module_name}' has no attribute '{attribute}'")
    name = f"{domain_name}:{spec}"
    if isinstance(fn, Task):
        if fn.domain != domain_name:
            raise FastBFMError(f"{module_name}:{attribute} is a task of domain '{fn.domain}', not '{domain_name}'")
        return replace(
            fn,
            reward=None if fn.reward is None else UserVectorReward(fn.reward, name),
            physics_reward=None if fn.physics_reward is None else UserReward(fn.physics_reward, name),
        )
    if not callable(fn):
        raise FastBFMError(f"{module_name}:{attribute} is neither a Task nor a function reward(physics) -> float")
    return Task(domain_name, spec, physics_reward=UserReward(fn, name), description=(fn.__doc__ or "").strip().split("\n")[0])


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


@functools.lru_cache(maxsize=1)
def _ensure_builtin_domains() -> None:
    # Importing a domain module registers it; done lazily (once) so the registry has no import cycle.
    import fastbfm.envs

    for module in pkgutil.iter_modules(fastbfm.envs.__path__):
        if module.name not in _SUPPORT_MODULES:
            importlib.import_module(f"fastbfm.envs.{module.name}")
