"""Schemas of the files fastbfm reads back: model and trainer configs, dataset manifests, grid cells and
budgets, run results. Every such file is checked against its schema before any of it is used: types,
ranges and sizes (a hidden width of 10^9 would otherwise reach an allocator), so a corrupt or
hand-edited file ends in one line naming the file and the field, never in a traceback or a huge
allocation. The bounds are generous: the paper-scale presets use a tenth of them.

The limits of the command line's integer options live here too, so that the CLI, the configs and the
schemas agree. Bottom layer: imports nothing of fastbfm but its error type.
"""

from __future__ import annotations

import dataclasses
import math

from pathlib import Path
from typing import Annotated, Any, Callable, Literal, Optional

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, RootModel, ValidationError, model_validator

from fastbfm.errors import FastBFMError

# -- limits shared by the command line, the configs and the schemas --------------------------------------
MAX_SEED = 2**32 - 1
"""Seeds are non-negative and below 2^32 (numpy's and torch's generators take them all)."""
MAX_SEEDS = 100
"""Seeds per command: each adds simulations to one batch."""
MAX_EPISODES = 100_000
"""Adaptation budgets, in episodes."""
MAX_EVAL_EPISODES = 1000
MAX_COLLECT_EPISODES = 1_000_000
MAX_NUM_ENVS = 1024
"""Simulations stepped together by `collect` (each holds a MuJoCo arena)."""
MAX_SEGMENT = 10_000
MAX_ROUND_STEPS = 1_000_000
"""A collection round keeps num_envs x segment_length steps in memory."""
MAX_BATCH_ENVS = 8192
"""Simulations in one batch anywhere (seeds x episodes, candidates, ...): about 16 MB of address space each."""
MAX_THREADS = 512
MAX_WORKERS = 256
MAX_UPDATES = 10**9
MAX_SAMPLES = 10**8
MAX_STEPS = 10**6
MAX_CANDIDATES = 1024
MAX_PIXELS = 4096
MAX_FPS = 240

MAX_DIM = 10_000
"""Observation, action and physics-state sizes."""
MAX_LATENT = 4096
MAX_HIDDEN = 8192
MAX_ENSEMBLE = 16
MAX_LAYERS = 64
MAX_ROWS = 10**7
"""Rows of one stored episode."""


def check_seed(seed: Any, what: str = "seed") -> int:
    """A seed is an int in [0, 2^32): the same rule for the CLI and the Python API."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise FastBFMError(f"{what} must be an integer from 0 to {MAX_SEED}, got {seed!r}")
    return seed


def check_finite_fields(config: Any, what: str) -> None:
    """Every float field of a dataclass config is finite: a NaN would pass every ``x <= 0`` check after it
    (a NaN step size runs a whole adaptation into non-finite actions, or into torch's own traceback)."""
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise FastBFMError(f"{what}'s {f.name} must be a finite number, got {value}")


# -- building blocks ------------------------------------------------------------------------------------
class _Strict(BaseModel):
    """JSON as written by fastbfm: no type coercion ('3' is not 3), unknown fields refused."""

    model_config = ConfigDict(strict=True, extra="forbid")


class _Open(BaseModel):
    """Checked where given; other fields (written by later or earlier versions) are kept as they are."""

    model_config = ConfigDict(strict=True, extra="allow")


def _int(lo: int, hi: int):
    return Annotated[int, Field(ge=lo, le=hi)]


Dim = _int(1, MAX_DIM)
Count = _int(0, 10**12)
Seed = _int(0, MAX_SEED)
Finite = Annotated[float, Field(allow_inf_nan=False)]
NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
FileName = Annotated[str, Field(pattern=r"^[^/\\]+$", max_length=255)]
"""A file beside the one that names it: no path, so a config cannot point outside its folder."""
Name = Annotated[str, Field(min_length=1, max_length=1000)]


# -- model checkpoints (config.json) ---------------------------------------------------------------------
class _NetworkFields(_Strict):
    """The sizes every model's networks share."""

    obs_dim: Dim
    action_dim: Dim
    z_dim: _int(1, MAX_LATENT) = 50
    hidden_dim: _int(1, MAX_HIDDEN) = 256
    ensemble_size: _int(1, MAX_ENSEMBLE) = 2


class FBModelFields(_NetworkFields):
    backward_hidden_dim: _int(1, MAX_HIDDEN) = 256


class SFModelFields(_NetworkFields):
    algorithm: Optional[Literal["hilp", "psm"]] = None
    feature_hidden_dim: _int(1, MAX_HIDDEN) = 256


class TrainMeta(_Open):
    discount: Optional[Annotated[float, Field(gt=0, lt=1)]] = None


class ModelMeta(_Open):
    """What a run records about itself; the fields fastbfm reads are typed."""

    domain: Optional[Name] = None
    algorithm: Optional[Name] = None
    preset: Optional[Name] = None
    seed: Optional[Seed] = None
    updates: Optional[Count] = None
    wall_time_s: Optional[NonNegative] = None
    dataset_transitions: Optional[Count] = None
    train: Optional[TrainMeta] = None
    init_from: Optional[dict[str, Any]] = None


class ModelConfigFile(_Open):
    format_version: Literal[1]
    algorithm: Literal["fb", "hilp", "psm"]
    model: dict[str, Any]
    sha256: dict[FileName, Sha256] = {}
    meta: ModelMeta = ModelMeta()

    def parts(self) -> list[tuple[str, type[BaseModel], Any]]:
        return [("model", FBModelFields if self.algorithm == "fb" else SFModelFields, self.model)]

    @model_validator(mode="after")
    def _same_algorithm(self):
        if self.model.get("algorithm", self.algorithm) != self.algorithm:
            raise ValueError(f"model.algorithm {self.model['algorithm']!r} differs from algorithm {self.algorithm!r}")
        return self


# -- trainer state (trainer.json) -----------------------------------------------------------------------
class ParamGroup(_Open):
    params: list[_int(0, 10**6)]
    lr: Annotated[float, Field(ge=0, le=1e3, allow_inf_nan=False)]


class OptimizerState(_Strict):
    param_groups: Annotated[list[ParamGroup], Field(min_length=1, max_length=1000)]


class TrainerStateFile(_Open):
    format_version: Literal[1]
    step: _int(0, MAX_UPDATES)
    wall_time_s: NonNegative
    train: dict[str, Any] = {}
    optimizers: dict[Name, OptimizerState]
    weights: Annotated[str, Field(pattern=r"^trainer(-\d{9})?\.safetensors$")] = "trainer.safetensors"
    sha256: dict[FileName, Sha256]

    @model_validator(mode="after")
    def _weights_listed(self):
        if self.weights not in self.sha256:
            raise ValueError(f"sha256 lists no checksum of its weights file {self.weights!r}")
        return self


# -- datasets (manifest.json) ---------------------------------------------------------------------------
class CollectRecipe(_Open):
    domain: Name
    episodes: _int(1, MAX_COLLECT_EPISODES)
    num_envs: _int(1, MAX_NUM_ENVS)
    seed: Seed
    segment_length: Optional[_int(1, MAX_SEGMENT)] = None


class ArraySpec(_Strict):
    dim: Dim
    dtype: Literal["float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32"]


class Arrays(_Strict):
    observation: ArraySpec
    action: ArraySpec
    physics: ArraySpec


class EpisodeEntry(_Strict):
    rows: _int(2, MAX_ROWS)
    sha256: Sha256


class ManifestFile(_Open):
    format_version: Literal[1]
    kind: Optional[Literal["fastbfm episodes"]] = None
    complete: bool
    config: CollectRecipe
    episodes: Optional[_int(1, MAX_COLLECT_EPISODES)] = None
    transitions: Optional[Count] = None
    arrays: Optional[Arrays] = None
    files: Optional[dict[Annotated[str, Field(pattern=r"^[^/\\]+\.npz$", max_length=255)], EpisodeEntry]] = None
    digest: Optional[Sha256] = None

    @model_validator(mode="after")
    def _consistent(self):
        if not self.complete:
            return self
        if self.files is None or self.arrays is None or self.episodes is None or self.transitions is None:
            raise ValueError("a complete manifest lists its episodes, transitions, arrays and files")
        if self.episodes != len(self.files):
            raise ValueError(f"episodes says {self.episodes}, files lists {len(self.files)}")
        if self.episodes != self.config.episodes:
            raise ValueError(f"episodes says {self.episodes}, its collection config {self.config.episodes}")
        if self.transitions != sum(f.rows - 1 for f in self.files.values()):
            raise ValueError(f"transitions says {self.transitions}, its files hold {sum(f.rows - 1 for f in self.files.values())}")
        return self


# -- adaptation results (results.json of run folders and grids, grid cells) ------------------------------
Curve = Annotated[list[Finite], Field(min_length=1, max_length=10**6)]


class Result(_Open):
    task: Name
    method: Optional[Name] = None
    seeds: Optional[Annotated[list[Seed], Field(min_length=1)]] = None
    zero_shot: Finite
    final: Finite
    episodes: Curve
    curves: Annotated[list[Curve], Field(min_length=1, max_length=10**4)]
    z: Optional[list[Optional[Annotated[list[Finite], Field(min_length=1, max_length=MAX_LATENT)]]]] = None
    z_zero_shot: Optional[Annotated[list[Finite], Field(min_length=1, max_length=MAX_LATENT)]] = None
    latents: Optional[list[Optional[list[Optional[Annotated[list[Finite], Field(min_length=1, max_length=MAX_LATENT)]]]]]] = None
    """Per seed, the latent deployed at each point of the curve (None where the policy is not one latent,
    or for a seed that recorded none)."""

    @model_validator(mode="after")
    def _shapes(self):
        bad = [len(c) for c in self.curves if len(c) != len(self.episodes)]
        if bad:
            raise ValueError(f"a curve has {bad[0]} points for {len(self.episodes)} budgets")
        if self.seeds is not None and len(self.seeds) != len(self.curves):
            raise ValueError(f"{len(self.seeds)} seeds for {len(self.curves)} curves")
        if self.z is not None and len(self.z) != len(self.curves):
            raise ValueError(f"{len(self.z)} latents for {len(self.curves)} curves")
        if self.latents is not None:
            if len(self.latents) != len(self.curves):
                raise ValueError(f"latents for {len(self.latents)} seeds, {len(self.curves)} curves")
            if bad := [len(per_seed) for per_seed in self.latents if per_seed is not None and len(per_seed) != len(self.episodes)]:
                raise ValueError(f"a seed's latents number {bad[0]} for {len(self.episodes)} budgets")
        return self


class RunResultsFile(_Open):
    model: Optional[Name] = None
    model_digest: Optional[Sha256] = None
    results: Annotated[list[Result], Field(min_length=1)]


class Cell(_Strict):
    model: Name
    task: Name
    method: Name
    seed: Seed


class GridCellFile(_Open):
    format_version: Literal[1]
    cell: Cell
    budget_episodes: _int(0, MAX_EPISODES)
    result: Result

    @model_validator(mode="after")
    def _one_seed(self):
        if len(self.result.curves) != 1:
            raise ValueError(f"a cell holds one seed's curve, this one {len(self.result.curves)}")
        return self


class GridBudgetFile(_Strict):
    episodes: _int(0, MAX_EPISODES)
    eval_episodes: _int(1, MAX_EVAL_EPISODES)
    eval_every: NonNegative
    discount: Optional[Annotated[float, Field(gt=0, lt=1)]] = None


class GridModelsFile(RootModel[dict[Annotated[str, Field(min_length=1, max_length=4096)], Sha256]]):
    """models.json of a grid folder: per model name, the SHA-256 of its weights."""


def _blank_is_none(value: Any) -> Any:
    return None if value == "" else value


class GridTableRow(BaseModel):
    """A row of a grid's results.csv (text cells, so numbers are parsed, not strict)."""

    model_config = ConfigDict(extra="allow")
    model: Name
    task: Name
    method: Name
    seed: Seed
    budget_episodes: NonNegative
    episodes: NonNegative
    return_: Annotated[Finite, Field(alias="return")]
    compute_s_per_episode: Annotated[Optional[NonNegative], BeforeValidator(_blank_is_none)] = None
    sim_s_per_episode: Annotated[Optional[NonNegative], BeforeValidator(_blank_is_none)] = None


class EpisodeTableRow(BaseModel):
    """A row of a grid's episodes.csv: one evaluation episode's return."""

    model_config = ConfigDict(extra="allow")
    model: Name
    task: Name
    method: Name
    seed: Seed
    episodes: NonNegative
    start: _int(0, 10**6)
    return_: Annotated[Finite, Field(alias="return")]


# -- validation -----------------------------------------------------------------------------------------
def checker(schema: type[BaseModel], what: str) -> Callable[[Any, Path], Any]:
    """``schema`` as the check that :func:`fastbfm.io.read_json` and ``read_csv`` take: ``(data, path) -> data``."""
    return lambda data, path: validate(path, data, schema, what)


def _where(loc: tuple) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"


def validate(path: str | Path, data: Any, schema: type[BaseModel], what: str = "file") -> Any:
    """``data`` (read from ``path``) checked against ``schema``; returned unchanged. A failure is one
    FastBFMError line: '<what> <path>: field <a.b>: <problem> (got <value>)'."""
    _check(Path(path), data, schema, what, ())
    return data


def _check(path: Path, data: Any, schema: type[BaseModel], what: str, prefix: tuple) -> None:
    try:
        checked = schema.model_validate(data)
    except ValidationError as e:
        errors = e.errors(include_url=False)
        first = errors[0]
        loc = prefix + tuple(first["loc"])
        got = repr(first.get("input"))
        got = got if len(got) <= 60 else got[:57] + "..."
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        message = first["msg"].removeprefix("Value error, ")
        field = "" if first["type"] == "value_error" and not loc else f"field {_where(loc)}: "
        shown = "" if first["type"] in ("value_error", "missing") else f" (got {got})"
        raise FastBFMError(f"{what} {path}: {field}{message}{shown}{more}") from None
    # fields whose schema depends on another field (a model's sizes on its algorithm)
    for name, part, value in getattr(checked, "parts", lambda: [])():
        _check(path, value, part, what, prefix + (name,))
