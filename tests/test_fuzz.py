"""Fuzzing the files fastbfm reads back: hypothesis corrupts model configs, trainer states, dataset
manifests, episode files, grid cells and budgets, grid tables and run results, and the command that
reads each runs on them in a separate process. Every corruption breaks the file's documented format (a
wrong type, an absurd size, a missing field, a NaN, bytes that are not JSON), so the command must end
in exactly one line ``error: ...`` and a non-zero exit: a traceback or an exit 0 fails the test.

One worker process (``python -c DRIVER``) runs the real CLI entry point, ``fastbfm.cli.main``, once per
case, so the suite pays for importing torch and MuJoCo once. The default run tries a few derandomized
examples per file kind (about a minute on 2 busy cores); ``-m slow`` runs many random ones.
"""

import csv
import json
import math
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from fastbfm.bfm.checkpoint import load_model, save_model
from fastbfm.data.collect import CollectConfig, collect
from fastbfm.data.dataset import episode_files
from fastbfm.data.manifest import MANIFEST
from tests.cli_helpers import write_grid_with_cell
from tests.metamotivo_fixture import write_random_checkpoint

REPO = Path(__file__).resolve().parent.parent
MAZE = "point_mass_maze:reach_top_left"
DEFAULT_EXAMPLES, SLOW_EXAMPLES = 25, 200

DRIVER = r'''
import contextlib, io, json, os, sys, traceback
from fastbfm.bfm import fb
fb.PRESETS["tiny"] = (dict(z_dim=8, hidden_dim=32, backward_hidden_dim=32), fb.FBTrainConfig(batch_size=32))
from fastbfm.cli import main
reply = sys.stdout
for line in sys.stdin:
    case = json.loads(line)
    os.chdir(case["cwd"])
    sys.argv = ["fastbfm", *case["argv"]]
    out, err = io.StringIO(), io.StringIO()
    code, crash = None, None
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main()
        except SystemExit as e:
            code = e.code
        except BaseException:
            crash = traceback.format_exc()
    reply.write(json.dumps({"code": code, "stderr": err.getvalue(), "crash": crash}) + "\n")
    reply.flush()
'''


class CLIWorker:
    """A `fastbfm` process that runs one command line per request."""

    def __init__(self):
        self.proc = subprocess.Popen([sys.executable, "-c", DRIVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"})

    def run(self, argv, cwd) -> dict:
        self.proc.stdin.write(json.dumps({"argv": [str(a) for a in argv], "cwd": str(cwd)}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, f"the CLI worker died running {argv}"
        return json.loads(line)

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


@pytest.fixture(scope="module")
def cli():
    worker = CLIWorker()
    yield worker
    worker.close()


def assert_refused(reply, argv, what):
    shown = f"{what}\n{' '.join(map(str, argv))}"
    assert reply["crash"] is None, f"traceback on {shown}\n{reply['crash']}"
    lines = reply["stderr"].strip().splitlines()
    assert reply["code"] not in (0, None), f"exit 0 on bad input: {shown}\n{reply['stderr'][-1500:]}"
    assert len(lines) == 1 and lines[0].startswith("error: "), f"not one error line: {shown}\n{reply['stderr'][-1500:]}"


# -- corruptions ---------------------------------------------------------------------------------------

DELETE = object()
junk = st.one_of(st.none(), st.booleans(), st.text(max_size=6), st.lists(st.integers(), max_size=2),
                 st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
non_finite = st.sampled_from([math.nan, math.inf, -math.inf])
BAD = {
    # what is not a value of the field's kind, whatever its meaning
    "int": st.one_of(junk, st.integers(max_value=-1), st.integers(min_value=10**13, max_value=10**40),
                     st.floats(allow_nan=False).filter(lambda x: x != int(x) if math.isfinite(x) else True), non_finite),
    "pos": st.one_of(junk, st.integers(max_value=0), st.integers(min_value=10**13, max_value=10**40), non_finite),
    "float": st.one_of(st.none(), st.text(max_size=6), st.lists(st.floats(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(), max_size=1), non_finite),
    "nonneg": st.one_of(st.none(), st.text(max_size=6), st.floats(max_value=-1e-6, allow_nan=False), non_finite),
    "str": st.one_of(st.none(), st.integers(), st.floats(allow_nan=False), st.lists(st.text(), max_size=2), st.just("")),
    "bool": st.one_of(st.none(), st.integers(), st.text(max_size=4), st.lists(st.booleans(), max_size=2)),
    "dict": st.one_of(st.none(), st.integers(), st.text(max_size=4), st.lists(st.integers(), max_size=2)),
    "list": st.one_of(st.none(), st.integers(), st.text(max_size=4), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2)),
    "hex": st.one_of(st.none(), st.integers(), st.text(max_size=10), st.just("g" * 64)),
    "version": st.one_of(st.none(), st.just("1"), st.integers().filter(lambda v: v != 1), st.just(1.5)),
    "required": st.just(DELETE),
}
# optional fields: null is a legal value there (a run that records no domain, results without seeds)
for _kind in ("int", "nonneg", "str", "list", "float", "dict", "hex"):
    BAD["opt_" + _kind] = BAD[_kind].filter(lambda v: v is not None)


def _set(doc, path, value):
    *parents, last = path
    node = doc
    for key in parents:
        node = node[key]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value


def _mutations(fields):
    """(path, bad value) pairs: a field of the format and a value its kind never takes."""
    return st.sampled_from(fields).flatmap(lambda f: BAD[f[1]].map(lambda v: (f[0], v)))


def _corrupt_json(path: Path, fields, draw_mutation, raw):
    """Apply 1-3 mutations to the JSON at ``path``, or replace its bytes by ``raw``."""
    if raw is not None:
        path.write_bytes(raw)
        return
    doc = json.loads(path.read_text())
    applied = 0
    for field_path, value in draw_mutation:
        try:
            _set(doc, field_path, value)
            applied += 1
        except (KeyError, IndexError, TypeError):
            pass  # an earlier mutation replaced or deleted a parent
    assume(applied)
    path.write_text(json.dumps(doc))


RAW = st.one_of(st.none(), st.none(), st.none(), st.sampled_from([b"", b"{", b"[1, 2]", b"null", b"\xff\xfe", b'{"format_version": 1}']),
                st.binary(max_size=40))


def _case(fields):
    return st.tuples(st.lists(_mutations(fields), min_size=1, max_size=3), RAW)


def _fuzz(strategy, slow=False):
    """A hypothesis test over ``strategy``: derandomized and short by default, long and random when slow."""

    def wrap(body):
        s = settings(max_examples=SLOW_EXAMPLES if slow else DEFAULT_EXAMPLES, deadline=None, derandomize=not slow, database=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large])
        test = s(given(case=strategy)(body))
        return pytest.mark.slow(test) if slow else test

    return wrap


# -- the files and the commands that read them ------------------------------------------------------------


@pytest.fixture(scope="module")
def bases(tmp_path_factory, cli):
    """One good file of each kind, made by the real commands."""
    root = tmp_path_factory.mktemp("fuzz_bases")
    data = root / "data"
    collect(CollectConfig(episodes=3, num_envs=3, seed=2), data, progress=False)
    run = root / "run"
    argv = ["pretrain", "--data", data, "--out", run, "--preset", "tiny", "--updates", 4, "--checkpoint-every", 2, "--threads", 1, "-q"]
    reply = cli.run(argv, root)
    assert reply["code"] == 0 and reply["crash"] is None, reply
    grid = root / "grid"
    write_grid_with_cell(grid, zero_shot=1.5, final=1.5)
    reply = cli.run(["grid", "--out", grid, *GRID_ARGS], root)
    assert reply["code"] == 0 and reply["crash"] is None, reply
    results = root / "results"
    results.mkdir()
    shutil.copy(grid / "results.json", results / "results.json")
    compact = {}
    for dtype in (torch.float16, torch.int8):
        compact[dtype] = save_model(load_model(run), root / f"weights-{str(dtype).split('.')[-1]}", dtype=dtype)
    mm = write_random_checkpoint(root / "metamotivo", obs_dim=4, action_dim=2, z_dim=8, hidden_dim=16, backward_hidden_dim=8,
                                 agent_layout=True)  # fmt: skip
    evolution = root / "evolution"
    reply = cli.run(["adapt", "--model", "maze-fb", "--task", MAZE, "--method", "lola", "--no-safe", "--episodes", 2, "--seeds", 1,
                     "--eval-episodes", 1, "--eval-every", 1, "--data", data, "--out", evolution, "-q"], root)  # fmt: skip
    assert reply["code"] == 0 and reply["crash"] is None, reply
    return {"data": data, "run": run, "grid": grid, "results": results, "root": root, "float16": compact[torch.float16],
            "int8": compact[torch.int8], "metamotivo": mm, "evolution": evolution}  # fmt: skip


MAZE_MODEL = "maze-fb"
GRID_ARGS = ["--model", "maze-fb", "--task", MAZE, "--method", "zero-shot", "--seeds", 1, "--episodes", 1, "--eval-episodes", 1, "-q"]

MODEL_FIELDS = [
    (("format_version",), "version"), (("algorithm",), "str"), (("algorithm",), "required"), (("model",), "dict"), (("model",), "required"),
    (("model", "obs_dim"), "pos"), (("model", "action_dim"), "pos"), (("model", "z_dim"), "pos"), (("model", "hidden_dim"), "pos"),
    (("model", "backward_hidden_dim"), "pos"), (("model", "ensemble_size"), "pos"), (("model", "obs_dim"), "required"),
    (("sha256",), "dict"), (("sha256", "model.safetensors"), "hex"), (("meta",), "dict"), (("meta", "updates"), "opt_int"),
    (("meta", "wall_time_s"), "opt_nonneg"), (("meta", "domain"), "opt_str"),
]
TRAINER_FIELDS = [
    (("format_version",), "version"), (("step",), "int"), (("step",), "required"), (("wall_time_s",), "nonneg"), (("optimizers",), "dict"),
    (("optimizers",), "required"), (("optimizers", "actor"), "dict"), (("optimizers", "actor", "param_groups"), "list"),
    (("optimizers", "actor", "param_groups", 0), "dict"), (("optimizers", "actor", "param_groups", 0, "params"), "list"),
    (("optimizers", "actor", "param_groups", 0, "lr"), "nonneg"), (("weights",), "str"), (("sha256",), "dict"), (("sha256",), "required"),
]
MANIFEST_FIELDS = [
    (("format_version",), "version"), (("complete",), "bool"), (("config",), "dict"), (("config", "episodes"), "pos"),
    (("config", "num_envs"), "pos"), (("config", "seed"), "int"), (("config", "domain"), "str"), (("episodes",), "pos"),
    (("transitions",), "int"), (("arrays",), "dict"), (("arrays", "physics"), "dict"), (("arrays", "observation", "dim"), "pos"),
    (("arrays", "action", "dtype"), "str"), (("files",), "dict"), (("files",), "required"), (("digest",), "opt_hex"),
]
CELL_FIELDS = [
    (("format_version",), "version"), (("cell",), "dict"), (("cell", "seed"), "int"), (("cell", "model"), "str"), (("cell", "method"), "str"),
    (("budget_episodes",), "int"), (("result",), "dict"), (("result",), "required"), (("result", "task"), "str"),
    (("result", "zero_shot"), "float"), (("result", "final"), "float"), (("result", "final"), "required"), (("result", "episodes"), "list"),
    (("result", "curves"), "list"), (("result", "curves", 0), "list"), (("result", "curves", 0, 0), "float"),
]
BUDGET_FIELDS = [(("episodes",), "int"), (("eval_episodes",), "pos"), (("eval_every",), "nonneg"), (("episodes",), "required")]
RESULTS_FIELDS = [
    (("results",), "list"), (("results",), "required"), (("results", 0), "dict"), (("results", 0, "task"), "str"),
    (("results", 0, "zero_shot"), "float"), (("results", 0, "final"), "float"), (("results", 0, "episodes"), "list"),
    (("results", 0, "curves"), "list"), (("results", 0, "curves", 0), "list"), (("results", 0, "curves", 0, 0), "float"),
    (("results", 0, "seeds"), "opt_list"), (("results", 0, "seeds", 0), "int"), (("results", 0, "latents"), "opt_list"),
    (("results", 0, "z"), "opt_list"),
]
MODELS_FIELDS = [((MAZE_MODEL,), "hex"), ((MAZE_MODEL,), "opt_str")]


def _fresh(base: Path, tmp: Path) -> Path:
    target = tmp / base.name
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(base, target)
    return target


def _model_config(cli, bases, case):
    ckpt = _fresh(bases["run"], bases["root"] / "cases")
    _corrupt_json(ckpt / "config.json", MODEL_FIELDS, *case)
    argv = ["eval", "--model", ckpt, "--task", MAZE, "--goal", "0,0,0,0", "--episodes", 1]
    assert_refused(cli.run(argv, bases["root"]), argv, (ckpt / "config.json").read_text(errors="replace")[:400])


def _trainer_state(cli, bases, case):
    run = _fresh(bases["run"], bases["root"] / "cases")
    _corrupt_json(run / "trainer.json", TRAINER_FIELDS, *case)
    argv = ["pretrain", "--data", bases["data"], "--out", run, "--preset", "tiny", "--updates", 4, "--checkpoint-every", 2, "--threads", 1, "-q"]
    assert_refused(cli.run(argv, bases["root"]), argv, (run / "trainer.json").read_text(errors="replace")[:400])


def _manifest(cli, bases, case):
    data = _fresh(bases["data"], bases["root"] / "cases")
    _corrupt_json(data / MANIFEST, MANIFEST_FIELDS, *case)
    argv = ["eval", "--model", "maze-fb", "--task", MAZE, "--data", data, "--samples", 50, "--episodes", 1]
    assert_refused(cli.run(argv, bases["root"]), argv, (data / MANIFEST).read_text(errors="replace")[:400])


def _grid_file(cli, bases, case):
    (which, (mutations, raw)) = case
    grid = _fresh(bases["grid"], bases["root"] / "cases")
    path = next((grid / "cells").glob("*.json")) if which == "cell" else grid / "grid.json"
    _corrupt_json(path, CELL_FIELDS if which == "cell" else BUDGET_FIELDS, mutations, raw)
    argv = ["grid", "--out", grid, *GRID_ARGS]
    assert_refused(cli.run(argv, bases["root"]), argv, path.read_text(errors="replace")[:400])


COMPACT_FIELDS = [(("weights",), "str"), (("weights",), "version"), (("sha256", "model.safetensors"), "hex"), (("model", "z_dim"), "pos")]


def _compact_weights(cli, bases, case):
    """float16 and int8 checkpoints: their storage field and config corrupted."""
    which, (mutations, raw) = case
    ckpt = _fresh(bases[which], bases["root"] / "cases")
    _corrupt_json(ckpt / "config.json", COMPACT_FIELDS, mutations, raw)
    argv = ["eval", "--model", ckpt, "--task", MAZE, "--goal", "0,0,0,0", "--episodes", 1]
    assert_refused(cli.run(argv, bases["root"]), argv, (ckpt / "config.json").read_text(errors="replace")[:400])


METAMOTIVO_FIELDS = [  # model/config.json: the architecture
    (("obs_dim",), "pos"), (("action_dim",), "pos"), (("archi",), "dict"), (("archi", "z_dim"), "pos"), (("archi", "f"), "dict"),
    (("archi", "f", "hidden_dim"), "pos"), (("archi", "f", "num_parallel"), "pos"), (("archi", "b", "hidden_layers"), "pos"),
    (("archi", "actor", "model"), "str"), (("archi", "norm_z"), "bool"), (("obs_dim",), "required"), (("archi", "z_dim"), "required"),
]
# config.json: the agent's (Meta Motivo's train.discount may be null: the checkpoint then records none)
METAMOTIVO_AGENT_FIELDS = [(("train", "discount"), "opt_float"), (("train",), "opt_dict")]


def _metamotivo(cli, bases, case):
    """A Meta Motivo agent folder, its model or agent config corrupted; adapted with --discount as docs/metamotivo.md shows."""
    which, (mutations, raw) = case
    folder = _fresh(bases["metamotivo"], bases["root"] / "cases")
    path = folder / "model" / "config.json" if which == "model" else folder / "config.json"
    _corrupt_json(path, METAMOTIVO_FIELDS if which == "model" else METAMOTIVO_AGENT_FIELDS, mutations, raw)
    argv = ["adapt", "--model", folder, "--task", MAZE, "--method", "lola", "--no-safe", "--episodes", 1, "--seeds", 1, "--eval-episodes", 1,
            "--data", bases["data"], "--discount", 0.98, "-q"]  # fmt: skip
    assert_refused(cli.run(argv, bases["root"]), argv, path.read_text(errors="replace")[:400])


# Command-line values out of their range, or of the wrong kind, for the options added since the first round.
BAD_NUMBERS = ["nan", "inf", "-inf", "-1", "x", "1e400", ""]
CLI_VALUES = {
    "--confidence": [*BAD_NUMBERS, "0.2", "1", "1.5"], "--safe-starts": [*BAD_NUMBERS, "0", "1", "99999999999"],
    "--safe-duels": [*BAD_NUMBERS, "0"], "--score": ["median", "", "RETURN", "1"], "--candidates": [*BAD_NUMBERS, "0", "1"],
    "--horizon": [*BAD_NUMBERS, "0"], "--sigma": [*BAD_NUMBERS, "0"], "--lr": [*BAD_NUMBERS, "0"], "--eval-every": BAD_NUMBERS[:-1],
    "--episodes": [*BAD_NUMBERS, "1e12"],
}  # fmt: skip
BENCH_VALUES = {  # `fastbfm bench <command>` options, by "command option"
    "train --updates": [*BAD_NUMBERS, "0", "1e12"], "train --threads": [*BAD_NUMBERS, "0", "100000"], "train --preset": ["huge", ""],
    "train --algorithm": ["sac", ""], "train --device": ["tpu", ""], "train --concurrent": ["-1", "x", "100000"],
    "sim --envs": [*BAD_NUMBERS, "0", "100000"], "sim --steps": [*BAD_NUMBERS, "0"], "sim --task": ["walker:fly", "x"],
    "relabel --samples": [*BAD_NUMBERS, "0"], "relabel --task": ["maze:reach", ""],
}  # fmt: skip
CLI_CASE = st.one_of(
    st.sampled_from(sorted(CLI_VALUES)).flatmap(lambda o: st.tuples(st.just("adapt"), st.just(o), st.sampled_from(CLI_VALUES[o]))),
    st.tuples(st.just("render --at"), st.just("--at"), st.sampled_from([*BAD_NUMBERS, "3", "1e12"])),
    st.tuples(st.just("global"), st.just("--reward-timeout"), st.sampled_from([*BAD_NUMBERS, "1e7"])),
    st.tuples(st.just("grid --lockstep"), st.sampled_from(["--lockstep", "--no-lockstep"]), st.sampled_from(["--episodes", "--seeds", "--workers"])),
    st.sampled_from(sorted(BENCH_VALUES)).flatmap(lambda o: st.tuples(st.just("bench"), st.just(o), st.sampled_from(BENCH_VALUES[o]))),
)


def _cli_values(cli, bases, case):
    command, option, value = case
    lola = ["adapt", "--model", "maze-fb", "--task", MAZE, "--method", "lola", "--seeds", 1, "--data", bases["data"]]
    if command == "adapt":
        argv = [*lola, "--episodes", 1, option, value] if option != "--episodes" else [*lola, option, value]
    elif command == "render --at":  # the run spent 2 episodes: 3 and beyond are outside it
        argv = ["render", "--z-from", bases["evolution"], "--evolution", "--at", 0, "--at", value, "--out", bases["root"] / "cases" / "x.gif", "--steps", 2, "-q"]
    elif command == "global":
        argv = [option, value, "tasks"]
    elif command == "bench":
        which, flag = option.split()
        argv = ["bench", which, flag, value, "--json"]
    else:  # --lockstep with a bad value of another option
        argv = ["grid", "--out", _fresh(bases["grid"], bases["root"] / "cases"), "--model", "maze-fb", "--task", MAZE, "--method", "lola",
                option, value, "-1"]  # fmt: skip
    assert_refused(cli.run(argv, bases["root"]), argv, f"{command} {option} {value!r}")


EPISODE_TABLE_COLUMNS = ("seed", "episodes", "start", "return", "model", "task", "method")


def _write_episodes_table(grid: Path) -> Path:
    """A valid episodes.csv beside the grid's one-cell results.csv (two evaluation episodes per point)."""
    lines = ["model,task,method,seed,episodes,start,return"]
    for row in csv.DictReader((grid / "results.csv").open()):
        lines += [f"{row['model']},{row['task']},{row['method']},{row['seed']},{row['episodes']},{start},{row['return']}" for start in (0, 1)]
    (grid / "episodes.csv").write_text("\n".join(lines) + "\n")
    return grid / "episodes.csv"


def _episodes_table(cli, bases, case):
    """episodes.csv (per-episode returns, read by `fastbfm summarize` for the paired statistics)."""
    column, value, line = case
    grid = _fresh(bases["grid"], bases["root"] / "cases")
    table = _write_episodes_table(grid)
    rows = table.read_text().splitlines()
    header = rows[0].split(",")
    cells = rows[1 + line % (len(rows) - 1)].split(",")
    if column in ("model", "task", "method"):
        value = ""
    if column == "return" and value == "-1":
        value = "x"  # a return may be negative
    cells[header.index(column)] = value
    rows[1 + line % (len(rows) - 1)] = ",".join(cells)
    table.write_text("\n".join(rows) + "\n")
    argv = ["summarize", grid, "--out", grid / "report.md"]
    assert_refused(cli.run(argv, bases["root"]), argv, f"{column}={value!r}")


def _grid_models(cli, bases, case):
    grid = _fresh(bases["grid"], bases["root"] / "cases")
    _corrupt_json(grid / "models.json", MODELS_FIELDS, *case)
    argv = ["grid", "--out", grid, *GRID_ARGS]
    assert_refused(cli.run(argv, bases["root"]), argv, (grid / "models.json").read_text(errors="replace")[:400])


# A user reward's return value or behaviour: never a finite real number.
REWARD_BODIES = st.one_of(
    st.text(max_size=6).map(lambda t: f"return {t!r}"),
    st.sampled_from(["return None", "return float('nan')", "return -float('inf')", "return [0.5]", "return (1.0,)", "return {'r': 1}",
                     "return 1j", "return b'1'", "return np.ones(2)", "return np.array([[0.5]])", "return np.float64('nan')",
                     "raise KeyError('torso')", "raise SystemExit(0)", "raise SystemExit(None)", "sys.exit('bye')",
                     "raise ArithmeticError", "return object()", "return np.array('0.5')"]),
)


def _user_reward(cli, bases, case):
    folder = bases["root"] / "cases" / "rewards"
    folder.mkdir(parents=True, exist_ok=True)
    module = f"fuzz_reward_{abs(hash(case)) % 10**9}"
    (folder / f"{module}.py").write_text(f"import sys\nimport numpy as np\n\ndef r(physics):\n    {case}\n")
    argv = ["eval", "--model", "maze-fb", "--task", f"point_mass_maze:{module}:r", "--data", bases["data"], "--samples", 50, "--episodes", 1]
    assert_refused(cli.run(argv, folder), argv, case)


# An adaptation option with a valid value, given to a method that does not read it.
OPTION_VALUES = {"--candidates": "4", "--horizon": "10", "--sigma": "0.2", "--lr": "0.05", "--score": "return", "--no-safe": None,
                 "--confidence": "0.9", "--safe-starts": "3", "--safe-duels": "2", "--state-latent": None, "--warm-start": None}


@st.composite
def misplaced_option(draw):
    from fastbfm.adapt import methods as registry

    method = draw(st.sampled_from(list(registry.METHODS)))
    takes = {registry.OPTION_NAMES[n] for n in registry.get_method(method).options}
    foreign = sorted(set(OPTION_VALUES) - takes - ({"--no-safe"} if "--no-safe" in takes else set()))
    assume(foreign)
    chosen = draw(st.lists(st.sampled_from(foreign), min_size=1, max_size=2, unique=True))
    extra = draw(st.lists(st.sampled_from(sorted(takes - {"--no-safe"})), max_size=2, unique=True)) if takes - {"--no-safe"} else []
    return method, [x for o in (*chosen, *extra) for x in ((o,) if OPTION_VALUES[o] is None else (o, OPTION_VALUES[o]))]


def _adapt_options(cli, bases, case):
    method, options = case
    argv = ["adapt", "--model", "maze-fb", "--task", MAZE, "--method", method, *options, "--episodes", 1, "--seeds", 1, "--data", bases["data"]]
    reply = cli.run(argv, bases["root"])
    assert_refused(reply, argv, f"{method} {options}")
    assert reply["code"] == 2, reply["stderr"]


# The GPU job's numeric options, out of bounds.
JOB_BOUNDS = st.sampled_from(["--num-envs", "--eval-episodes", "--threads", "--seed", "--max-updates", "--checkpoint-every",
                              "--collect-episodes", "--total-minutes", "--train-minutes", "--collect-minutes"])
JOB_VALUES = st.one_of(st.sampled_from(["0", "-1", "nan", "inf", "-inf", "1e30", "99999999999"]), st.integers(max_value=-1).map(str))


def _gpu_job(cli, bases, case):
    option, value = case
    assume(not (option == "--seed" and value == "0"))  # the one valid value of the list
    out = bases["root"] / "cases" / "job-out"
    shutil.rmtree(out, ignore_errors=True)
    proc = subprocess.run([sys.executable, str(REPO / "jobs" / "gpu_job.py"), "--out", str(out), option, value], capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    reply = {"code": proc.returncode, "stderr": proc.stderr, "crash": proc.stderr if "Traceback" in proc.stderr else None}
    assert_refused(reply, [option, value], "gpu job")
    assert not out.exists()


def _run_results(cli, bases, case):
    run = _fresh(bases["results"], bases["root"] / "cases")
    _corrupt_json(run / "results.json", RESULTS_FIELDS, *case)
    argv = ["report", run, "-q"]
    assert_refused(cli.run(argv, bases["root"]), argv, (run / "results.json").read_text(errors="replace")[:400])


# -- episode files ---------------------------------------------------------------------------------------

EPISODE_KEYS = ("observation", "action", "physics", "discount")


@st.composite
def bad_episode(draw):
    """(key, corruption, argument): one array of a stored episode made unreadable by its format."""
    key = draw(st.sampled_from(EPISODE_KEYS))
    kind = draw(st.sampled_from(["non_finite", "length", "ndim", "dtype", "columns", "missing", "header", "bytes"]))
    if kind == "non_finite":
        return key, kind, (draw(st.integers(0, 1000)), draw(non_finite))
    if kind == "length":
        return key, kind, draw(st.integers(-1001, 50).filter(lambda d: d != 0))
    if kind == "ndim":
        return key, kind, draw(st.sampled_from([0, 1, 3])) if key != "discount" else 3
    if kind == "dtype":
        return key, kind, draw(st.sampled_from(["bool", "complex64", "U3", "datetime64[s]"]))
    if kind == "columns":
        return key, kind, draw(st.integers(0, 40))
    if kind == "header":
        return key, kind, draw(st.integers(10**9, 10**15))
    if kind == "bytes":
        return key, kind, draw(st.binary(max_size=64))
    return (key if key != "discount" else "physics"), kind, None


def _write_bad_episode(path: Path, key: str, kind: str, arg):
    with np.load(path) as ep:
        arrays = {k: ep[k] for k in ep.files}
    a = arrays[key]
    if kind == "non_finite":
        a = a.astype(np.float64)
        a.reshape(len(a), -1)[arg[0] % len(a), 0] = arg[1]
    elif kind == "length":
        a = np.resize(a, (max(0, len(a) + arg), *a.shape[1:]))
    elif kind == "ndim":
        a = a.reshape(-1)[:1].reshape(()) if arg == 0 else a.reshape(-1) if arg == 1 else a.reshape(len(a), -1, 1).repeat(2, axis=2)
    elif kind == "dtype":
        a = a.astype(arg)
    elif kind == "columns":
        a = np.zeros((len(a), arg if arg != a.reshape(len(a), -1).shape[1] else arg + 1), a.dtype)
        if key == "discount":
            a = np.zeros((len(a), 2), a.dtype)
    elif kind == "missing":
        del arrays[key]
    if kind == "bytes":
        path.write_bytes(arg)
        return
    if kind != "missing":
        arrays[key] = a
    if kind == "header":
        with zipfile.ZipFile(path, "w") as archive:
            for k, v in arrays.items():
                with archive.open(f"{k}.npy", "w") as f:
                    if k == key:
                        np.lib.format.write_array_header_1_0(f, {"descr": "<f8", "fortran_order": False, "shape": (arg, 4)})
                        f.write(b"\0" * 256)
                    else:
                        np.lib.format.write_array(f, v)
        return
    np.savez_compressed(path, **arrays)


def _episode(cli, bases, case):
    (key, kind, arg), with_manifest, index = case
    data = _fresh(bases["data"], bases["root"] / "cases")
    if not with_manifest:
        (data / MANIFEST).unlink()  # a foreign folder: the per-file checks alone
    path = episode_files(data)[index]
    _write_bad_episode(path, key, kind, arg)
    argv = ["eval", "--model", "maze-fb", "--task", MAZE, "--data", data, "--samples", 50, "--episodes", 1]
    assert_refused(cli.run(argv, bases["root"]), argv, f"{path.name}: {key} {kind} {arg!r}"[:400])


EPISODE_CASE = st.tuples(bad_episode(), st.booleans(), st.integers(0, 2))


# -- grid tables (results.csv, read by `fastbfm summarize`) -------------------------------------------------

CSV_COLUMNS = ("seed", "episodes", "return", "budget_episodes", "compute_s_per_episode", "model", "task", "method")
CSV_BAD = st.one_of(st.just("x"), st.just("-1"), st.just("nan"), st.just("inf"), st.just("1e400"), st.just(""))


def _grid_table(cli, bases, case):
    column, value, line = case
    grid = _fresh(bases["grid"], bases["root"] / "cases")
    table = grid / "results.csv"
    rows = table.read_text().splitlines()
    header = rows[0].split(",")
    cells = rows[1 + line % (len(rows) - 1)].split(",")
    if column in ("model", "task", "method"):
        value = ""  # no text is a bad name but none
    if (column == "compute_s_per_episode" and value == "") or (column == "return" and value == "-1"):
        value = "x"  # blank means unknown there; a return may be negative
    cells[header.index(column)] = value
    rows[1 + line % (len(rows) - 1)] = ",".join(cells)
    table.write_text("\n".join(rows) + "\n")
    argv = ["summarize", grid, "--out", grid / "report.md"]
    assert_refused(cli.run(argv, bases["root"]), argv, f"{column}={value!r}")


CSV_CASE = st.tuples(st.sampled_from(CSV_COLUMNS), CSV_BAD, st.integers(0, 10))


def test_the_good_files_are_accepted(cli, bases):
    """The control: every command of the fuzz, on the files before corruption, succeeds."""
    root = bases["root"]
    commands = [
        ["eval", "--model", bases["run"], "--task", MAZE, "--goal", "0,0,0,0", "--episodes", 1],
        ["pretrain", "--data", bases["data"], "--out", _fresh(bases["run"], root / "cases"), "--preset", "tiny", "--updates", 4,
         "--checkpoint-every", 2, "--threads", 1, "-q"],
        ["eval", "--model", "maze-fb", "--task", MAZE, "--data", bases["data"], "--samples", 50, "--episodes", 1],
        ["grid", "--out", _fresh(bases["grid"], root / "cases"), *GRID_ARGS],
        ["report", _fresh(bases["results"], root / "cases"), "-q"],
        ["summarize", bases["grid"], "--out", root / "report.md"],
        ["summarize", _write_episodes_table(_fresh(bases["grid"], root / "cases")).parent, "--out", root / "report2.md"],
        ["eval", "--model", bases["float16"], "--task", MAZE, "--goal", "0,0,0,0", "--episodes", 1],
        ["eval", "--model", bases["int8"], "--task", MAZE, "--goal", "0,0,0,0", "--episodes", 1],
        ["adapt", "--model", bases["metamotivo"], "--task", MAZE, "--method", "lola", "--no-safe", "--episodes", 1, "--seeds", 1,
         "--eval-episodes", 1, "--data", bases["data"], "--discount", 0.98, "-q"],
        ["render", "--z-from", bases["evolution"], "--evolution", "--at", 0, "--at", 2, "--out", root / "cases" / "ok.gif", "--steps", 2, "-q"],
    ]
    for argv in commands:
        reply = cli.run(argv, root)
        assert reply["code"] == 0 and reply["crash"] is None, (argv, reply)


TARGETS = {
    "model_config": (_model_config, _case(MODEL_FIELDS)),
    "trainer_state": (_trainer_state, _case(TRAINER_FIELDS)),
    "manifest": (_manifest, _case(MANIFEST_FIELDS)),
    "grid_cell_or_budget": (_grid_file, st.one_of(st.tuples(st.just("cell"), _case(CELL_FIELDS)), st.tuples(st.just("budget"), _case(BUDGET_FIELDS)))),
    "run_results": (_run_results, _case(RESULTS_FIELDS)),
    "grid_models": (_grid_models, _case(MODELS_FIELDS)),
    "user_reward": (_user_reward, REWARD_BODIES),
    "adapt_options": (_adapt_options, misplaced_option()),
    "gpu_job_options": (_gpu_job, st.tuples(JOB_BOUNDS, JOB_VALUES)),
    "compact_weights": (_compact_weights, st.tuples(st.sampled_from(["float16", "int8"]), _case(COMPACT_FIELDS))),
    "metamotivo_folder": (_metamotivo, st.one_of(st.tuples(st.just("model"), _case(METAMOTIVO_FIELDS)),
                                                 st.tuples(st.just("agent"), _case(METAMOTIVO_AGENT_FIELDS)))),
    "cli_values": (_cli_values, CLI_CASE),
    "episodes_table": (_episodes_table, st.tuples(st.sampled_from(EPISODE_TABLE_COLUMNS), CSV_BAD, st.integers(0, 10))),
    "episode": (_episode, EPISODE_CASE),
    "grid_table": (_grid_table, CSV_CASE),
}


def _make(name, slow):
    body, strategy = TARGETS[name]

    @_fuzz(strategy, slow)
    def test(cli, bases, case):
        body(cli, bases, case)

    test.__name__ = f"test_fuzz_{name}" + ("_long" if slow else "")
    return test


for _name in TARGETS:
    for _slow in (False, True):
        _test = _make(_name, _slow)
        globals()[_test.__name__] = _test
