"""The registry of adaptation methods: the one place that lists them.

The CLI (``adapt --method``, ``grid --method``), the experiments, the grids and the reports read every
method's name, label, adapter and configuration from here. Adding a method is one module (a frozen
config dataclass with a ``method_name``, and an :class:`~fastbfm.adapt.adapter.Adapter`) plus one line
in :data:`METHODS` below; a method defined outside fastbfm is added with :func:`register`
(docs/adaptation.md shows both).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable

from fastbfm.adapt.adapter import Adapter
from fastbfm.adapt.finetune import Finetune, FinetuneConfig
from fastbfm.adapt.lola import LoLA, LoLAConfig
from fastbfm.adapt.opti import OptiConfig, OptimisticInference
from fastbfm.adapt.race import Race, RaceConfig
from fastbfm.adapt.rela import ReLA, ReLAConfig
from fastbfm.adapt.safe import SafeConfig
from fastbfm.adapt.search import LatentSearch, SearchConfig
from fastbfm.errors import FastBFMError

DEFAULT_METHOD = "lola"
"""The CLI's default, and the method of results written before results named theirs."""
ZERO_SHOT, ORACLE = "zero-shot", "oracle"
"""The grid's two yardsticks beside the methods: the zero-shot latent itself, and the best of 256
latents (``fastbfm headroom``). Neither adapts, so neither is in the registry."""


@dataclass(frozen=True)
class MethodOptions:
    """What a user can ask of any method: the budget and evaluation schedule, and the shared knobs a
    method may read (None: the method's own default)."""

    episodes: int = 20
    eval_episodes: int = 10
    eval_every: float = 0.0
    candidates: int | None = None
    """Latents rolled out per step (LoLA's k, the search's population)."""
    horizon: int | None = None
    """Lookahead steps before bootstrapping (LoLA, cmaes-lookahead)."""
    sigma: float | None = None
    """Latent perturbation std per coordinate (LoLA; the search's initial step)."""
    lr: float | None = None
    """LoLA's Adam step on the latent mean."""
    score: str | None = None
    """LoLA and the race: how a lookahead is scored (``fastbfm.adapt.lola.SCORES``)."""
    safe: bool = True
    """Latent-search methods: deploy a new latent only on a won paired test (``fastbfm.adapt.safe``)."""
    confidence: float | None = None
    """Safe deployment's confidence (default: ``SafeConfig.confidence``; the race's own)."""
    safe_starts: int | None = None
    """Safe deployment's duel start states (not the race)."""
    safe_duels: int | None = None
    """Safe deployment's duels over the budget (not the race)."""
    state_latent: bool = False
    """ReLA: a state-conditioned latent instead of one global latent."""
    warm_start: bool = False
    """OpTI: centre the prior on the zero-shot reward embedding."""

    @property
    def budget(self) -> dict:
        return {"episodes": self.episodes, "eval_episodes": self.eval_episodes, "eval_every": self.eval_every}

    def given(self, **fields_to_options: str) -> dict:
        """``{config field: value}`` for the options set, e.g. ``given(num_candidates="candidates")``."""
        return {name: getattr(self, option) for name, option in fields_to_options.items() if getattr(self, option) is not None}


@dataclass(frozen=True)
class Method:
    """One adaptation method. ``build(options)`` makes its config; ``config.method_name == name``."""

    name: str
    label: str
    """Its name in tables, plots and videos."""
    adapter: type[Adapter]
    build: Callable[[MethodOptions], Any]
    summary: str
    """One line for ``--help``."""
    needs_labels: bool | Callable[[Any], bool] = True
    """Whether a run starts from the zero-shot latent of reward-labelled samples (or a function of its config)."""
    starts_at_zero_shot: bool = True
    """Whether its curve starts at the zero-shot latent (else at a prior draw): reports read the
    zero-shot reference from such curves."""
    options: frozenset[str] | None = None
    """The fields of :class:`MethodOptions` beyond the budget that ``build`` reads; setting another is an
    error (None: any, for methods registered before options were declared)."""

    def labels_needed(self, config) -> bool:
        return self.needs_labels(config) if callable(self.needs_labels) else self.needs_labels

    def configure(self, options: MethodOptions):
        """``build(options)``, after refusing options this method does not read (they would be ignored)."""
        if self.options is not None:
            defaults = MethodOptions()
            given = [name for name in OPTION_NAMES if getattr(options, name) != getattr(defaults, name)]
            if ignored := [name for name in given if name not in self.options]:
                takes = ", ".join(OPTION_NAMES[name] for name in OPTION_NAMES if name in self.options) or "only the budget options"
                raise OptionError(f"{', '.join(OPTION_NAMES[n] for n in ignored)} does not apply to {self.name} (it takes {takes})")
            if not options.safe and (ungated := [n for n in given if n in GATE_OPTIONS - {"safe"}]):
                raise OptionError(f"{', '.join(OPTION_NAMES[n] for n in ungated)} does not apply to {self.name} with --no-safe (no safe gate)")
        return self.build(options)


class OptionError(FastBFMError):
    """An option given to a method that does not read it: a usage error."""


# The optional fields of MethodOptions, by their command-line spelling.
OPTION_NAMES = {
    "candidates": "--candidates", "horizon": "--horizon", "sigma": "--sigma", "lr": "--lr", "score": "--score", "safe": "--no-safe",
    "confidence": "--confidence", "safe_starts": "--safe-starts", "safe_duels": "--safe-duels", "state_latent": "--state-latent",
    "warm_start": "--warm-start",
}  # fmt: skip
GATE_OPTIONS = frozenset({"safe", "confidence", "safe_starts", "safe_duels"})
LOOKAHEAD_OPTIONS = frozenset({"candidates", "horizon", "sigma", "lr", "score"})


def _safe(o: MethodOptions) -> dict:
    """The ``safe`` field of a gated method's config."""
    if not o.safe:
        return {"safe": None}
    given = {k: v for k, v in (("confidence", o.confidence), ("starts", o.safe_starts), ("duels", o.safe_duels)) if v is not None}
    return {"safe": SafeConfig(**given)} if given else {}


def _race(o: MethodOptions) -> RaceConfig:
    if not o.safe:
        return RaceConfig(**o.budget, **o.given(score="score"), confidence=None)
    return RaceConfig(**o.budget, **o.given(score="score", confidence="confidence"))


def _unsafe(build: Callable[[MethodOptions], Any]) -> Callable[[MethodOptions], Any]:
    return lambda o: build(replace(o, safe=False))


def _search(method: str, lookahead: bool):
    def build(o: MethodOptions) -> SearchConfig:
        horizon = {"horizon": o.horizon if o.horizon is not None else LoLAConfig.horizon, **o.given(score="score")} if lookahead else {}
        return SearchConfig(method=method, **o.budget, **horizon, **o.given(population="candidates", sigma="sigma"), **_safe(o))

    return build


def _lola(reset_free: bool):
    def build(o: MethodOptions) -> LoLAConfig:
        return LoLAConfig(**o.budget, reset_free=reset_free, **o.given(num_candidates="candidates", horizon="horizon", sigma="sigma", lr="lr", score="score"),
                          **_safe(o))

    return build


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method(DEFAULT_METHOD, "LoLA", LoLA, _lola(False), "LoLA: policy-gradient steps on the latent, scored by lookahead plus the critic",
               options=LOOKAHEAD_OPTIONS | GATE_OPTIONS),
        Method("lola-reset-free", "LoLA (reset-free)", LoLA, _lola(True), "LoLA whose lookaheads continue one episode",
               options=LOOKAHEAD_OPTIONS | GATE_OPTIONS),
        Method("rela", "ReLA", ReLA, lambda o: ReLAConfig(**o.budget, latent="state" if o.state_latent else "global", **_safe(o)),
               "ReLA: residual critics on top of the frozen one (--state-latent: a latent per state)", options=GATE_OPTIONS | {"state_latent"}),
        Method("finetune", "Fine-tuning", Finetune, lambda o: FinetuneConfig(**o.budget), "TD3 on copies of the networks", options=frozenset()),
        Method("cmaes", "CMA-ES", LatentSearch, _search("cmaes", False), "CMA-ES over the latent, one episode per candidate",
               options=GATE_OPTIONS | {"candidates", "sigma"}),
        Method("cmaes-lookahead", "CMA-ES + lookahead", LatentSearch, _search("cmaes", True), "CMA-ES on LoLA's lookahead scores",
               options=GATE_OPTIONS | {"candidates", "sigma", "horizon", "score"}),
        Method("cem", "CEM", LatentSearch, _search("cem", False), "the cross-entropy method over the latent",
               options=GATE_OPTIONS | {"candidates", "sigma"}),
        Method("race", "Race", Race, _race,
               "fastbfm's successive halving over latents on lookahead scores (docs/adaptation.md)", options=frozenset({"score", "safe", "confidence"})),
        Method("opti-ucb", "OpTI-UCB", OptimisticInference, lambda o: OptiConfig(rule="ucb", **o.budget, warm_start=o.warm_start),
               "optimistic task inference, upper confidence bound (label-free unless --warm-start)",
               needs_labels=lambda c: c.warm_start, starts_at_zero_shot=False, options=frozenset({"warm_start"})),
        Method("opti-thompson", "OpTI-TS", OptimisticInference, lambda o: OptiConfig(rule="thompson", **o.budget, warm_start=o.warm_start),
               "optimistic task inference, Thompson sampling (label-free unless --warm-start)",
               needs_labels=lambda c: c.warm_start, starts_at_zero_shot=False, options=frozenset({"warm_start"})),
    )
}
GATED = ("lola", "lola-reset-free", "rela", "cmaes", "cmaes-lookahead", "cem", "race")
"""The latent-search methods whose deployed latent moves only on a won paired test by default
(``fastbfm.adapt.safe``; the race tests its own final). ``<name>-unsafe`` is each with the gate off."""
METHODS = {name: m for base in METHODS.values() for name, m in (
    ((base.name, base), (f"{base.name}-unsafe", replace(base, name=f"{base.name}-unsafe", build=_unsafe(base.build),
                                                         options=base.options - GATE_OPTIONS,
                                                         label=base.label[:-1] + ", unsafe)" if base.label.endswith(")") else f"{base.label} (unsafe)",
                                                         summary=f"{base.name} without safe deployment")))
    if base.name in GATED else ((base.name, base),))}
"""Every method, in the order reports list them."""

_PLUGINS: dict[str, Method] = {}


def register(method: Method) -> Method:
    """Add a method defined outside fastbfm. Grid workers receive it by pickling, so its adapter and
    ``build`` must be module-level names (no lambda)."""
    if method.name in (ZERO_SHOT, ORACLE):
        raise FastBFMError(f"'{method.name}' is a yardstick of the grids, not a method name")
    METHODS[method.name] = _PLUGINS[method.name] = method
    return method


def plugins() -> tuple[Method, ...]:
    """The methods added with :func:`register` (what grid workers must register too)."""
    return tuple(_PLUGINS.values())


def names() -> list[str]:
    return list(METHODS)


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise FastBFMError(f"unknown method '{name}'; methods: {', '.join(METHODS)}")
    return METHODS[name]


def method_of(config) -> Method:
    """The registered method of an adaptation config."""
    return get_method(config.method_name)


def label(name: str) -> str:
    """A method's label; a name the registry does not hold stays as it is (results of another version)."""
    return METHODS[name].label if name in METHODS else name
