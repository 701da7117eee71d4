"""The GPU job: one call on a bare GPU machine, within a fixed wall-time budget (docs/gpu.md).

Steps, each a ``fastbfm`` command in a subprocess with its own time limit, so that the whole job ends
inside ``--total-minutes`` whatever a step does:

1. install what the machine lacks from the wheels the job brings (``wheels/``, jobs/build_wheels.py);
2. collect the domain's default exploration recipe on the machine's cores (``fastbfm collect``), or use
   ``--data``; a collection that runs out of its time keeps its whole rounds and is finished smaller;
3. pretrain for the training time left (``fastbfm pretrain``, checkpoints every ``--checkpoint-every``);
4. zero-shot evaluation of every task of the domain beside a random policy (``fastbfm eval``);
5. compact weights: the model in float16 (``model/``, loadable by ``fastbfm eval --model``);
6. ``fastbfm bench train --json`` and the CUDA test files (``--tests``), with what time is left.

Everything comes back in ``--out`` (default ``$OUT``): ``job.json`` (each step's command, exit status,
seconds and result; rewritten after every step, so a job cut short still reports), ``model/``,
``metrics.jsonl``, TensorBoard events when the package is there, and ``log.txt``.

    bash jobs/gpu_job.sh --domain walker                     # on the GPU machine, through the device tool
    python jobs/gpu_job.py --device cpu --domain point_mass_maze --collect-episodes 100 \\
        --train-minutes 0.2 --preset cpu --eval-episodes 2 --skip bench,tests --out job-out --work job-work   # a CPU rehearsal
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
NEEDED = ("mujoco", "dm_control", "dm_env", "tree", "absl", "lxml", "OpenGL", "glfw", "cma")
# Seconds kept for each step after training (their time limits); training gets what the budget leaves.
RESERVE = {"eval": 120, "pack": 20, "bench": 75, "tests": 90}
MARGIN = 15
# Seconds of a pretrain call before its first update: interpreter, torch and CUDA start-up, loading 1M
# transitions (40k files) and moving them to the GPU, CUDA-graph capture.
STARTUP = 60
LOG_LIMIT = 2_000_000


class Job:
    """Runs the steps against one deadline and records them in ``out/job.json``."""

    def __init__(self, args: argparse.Namespace):
        self.args, self.start = args, time.monotonic()
        self.deadline = self.start + 60 * args.total_minutes
        self.out, self.work = Path(args.out), Path(args.work)
        self.out.mkdir(parents=True, exist_ok=True)
        self.work.mkdir(parents=True, exist_ok=True)
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
        self.env["PYTHONPATH"] = os.pathsep.join(p for p in [str(ROOT / "src"), os.environ.get("PYTHONPATH", "")] if p)
        self.record = {"format_version": 1, "args": vars(args), "host": platform.node(), "steps": [], "budget_s": 60 * args.total_minutes}
        self.log = open(self.out / "log.txt", "w")

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def save(self) -> None:
        self.record["elapsed_s"] = round(time.monotonic() - self.start, 1)
        tmp = self.out / "job.json.tmp"
        tmp.write_text(json.dumps(self.record, indent=2))
        tmp.replace(self.out / "job.json")

    def run(self, name: str, cmd: list[str], limit: float, parse_json: bool = False) -> dict:
        """Run ``cmd`` for at most ``limit`` seconds (and never past the deadline less the margin)."""
        limit = max(1.0, min(limit, self.left() - MARGIN))
        step = {"step": name, "command": shlex.join(cmd), "limit_s": round(limit, 1)}
        self.log.write(f"\n=== {name} (limit {limit:.0f} s): {step['command']}\n")
        self.log.flush()
        begin = time.monotonic()
        try:
            proc = subprocess.run(cmd, cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=limit)
            step["rc"], stdout, stderr = proc.returncode, proc.stdout, proc.stderr
        except subprocess.TimeoutExpired as e:
            step["rc"], step["timed_out"] = None, True
            stdout, stderr = _text(e.stdout), _text(e.stderr)
        step["seconds"] = round(time.monotonic() - begin, 1)
        if self.log.tell() < LOG_LIMIT:
            self.log.write(stdout[-20_000:] + stderr[-20_000:])
            self.log.flush()
        if parse_json and step["rc"] == 0:
            try:
                step["result"] = json.loads(stdout)
            except json.JSONDecodeError:
                step["error"] = "output is not JSON"
        elif step["rc"] != 0:
            step["error"] = (stderr.strip().splitlines() or ["(no output)"])[-1][:500]
        print(f"[{time.monotonic() - self.start:6.1f} s] {name}: rc {step['rc']} in {step['seconds']} s", flush=True)
        self.record["steps"].append(step)
        self.save()
        return step

    def skip(self, name: str, why: str) -> None:
        self.record["steps"].append({"step": name, "skipped": why})
        self.save()


def _text(value) -> str:
    if value is None:
        return ""
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def _fastbfm(*args) -> list[str]:
    return [sys.executable, "-m", "fastbfm", *map(str, args)]


def _missing() -> list[str]:
    return [name for name in NEEDED if importlib.util.find_spec(name) is None]


def install(job: Job) -> bool:
    missing = _missing()
    job.record["missing_before_install"] = missing
    if not missing:
        job.skip("install", "everything needed is installed")
        return True
    wheels = sorted(Path(job.args.wheels).glob("*.whl"))
    if not wheels:
        job.skip("install", f"missing {', '.join(missing)} and no wheels in {job.args.wheels}: run jobs/build_wheels.py and carry wheels/")
        return False
    site = job.work / "site"
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", "--no-compile", "--no-cache-dir",
           "--disable-pip-version-check", "--target", str(site), *map(str, wheels)]
    if job.run("install", cmd, 120)["rc"] != 0:
        return False
    job.env["PYTHONPATH"] = os.pathsep.join([job.env["PYTHONPATH"], str(site)])
    sys.path.append(str(site))
    importlib.invalidate_caches()
    return not _missing()


def describe_machine(job: Job) -> None:
    import torch

    job.record["machine"] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda_available": torch.cuda.is_available(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "cpus": os.cpu_count(),
    }
    job.save()


def collect(job: Job) -> Path | None:
    a = job.args
    if a.data:
        return Path(a.data)
    data = job.work / "data"
    base = ["collect", "--domain", a.domain, "--out", data, "--num-envs", a.num_envs, "--seed", a.seed, "-q", "--json"]
    if a.collect_episodes:
        base += ["--episodes", a.collect_episodes]
    step = job.run("collect", _fastbfm(*base), 60 * a.collect_minutes, parse_json=True)
    if step["rc"] == 0:
        return data
    kept = len(list(data.glob("*.npz"))) // a.num_envs * a.num_envs
    if not step.get("timed_out") or kept == 0:
        return None
    # out of time: finish with the whole rounds already written (the collector keeps them on a rerun)
    if "--episodes" in base:
        base[base.index("--episodes") + 1] = kept
    else:
        base += ["--episodes", kept]
    return data if job.run("collect-finish", _fastbfm(*base), 90, parse_json=True)["rc"] == 0 else None


def pretrain(job: Job, data: Path) -> Path | None:
    a = job.args
    run = job.work / "run"
    after = sum(RESERVE[s] for s in RESERVE if s not in a.skip) + MARGIN
    seconds = min(60 * a.train_minutes, job.left() - after)
    job.record["train_budget_s"] = round(seconds, 1)
    if seconds < 10:
        job.skip("pretrain", f"only {seconds:.0f} s left for training")
        return None
    help_text = subprocess.run(_fastbfm("pretrain", "--help"), cwd=ROOT, env=job.env, capture_output=True, text=True).stdout
    cmd = ["pretrain", "--data", data, "--out", run, "--algorithm", a.algorithm, "--preset", a.preset, "--seed", a.seed,
           "--checkpoint-every", a.checkpoint_every, "--updates", a.max_updates, "--threads", a.threads, "-q", "--json"]
    if "--device" in help_text:
        cmd += ["--device", a.device]
    if "--max-minutes" in help_text:  # its clock starts once the dataset is on the device
        cmd += ["--max-minutes", round(max(seconds - STARTUP, 0.1 * seconds) / 60, 3)]
    if "--tensorboard" in help_text and importlib.util.find_spec("tensorboard") is not None:
        cmd += ["--tensorboard"]
    # The subprocess limit also stops a trainer without a time option: its last checkpoint is the model.
    step = job.run("pretrain", _fastbfm(*cmd), seconds, parse_json=True)
    if not (run / "config.json").is_file():
        return None
    if step.get("timed_out"):
        step.update(rc=0, note="stopped at its time limit, as planned: the last checkpoint is the model")
    config = json.loads((run / "config.json").read_text())
    step["updates"], step["wall_time_s"] = config["meta"].get("updates"), config["meta"].get("wall_time_s")
    job.save()
    return run


def evaluate(job: Job, model: Path, data: Path) -> None:
    a = job.args
    from fastbfm.envs import get_domain

    tasks = a.tasks.split(",") if a.tasks else [t.full_name for t in get_domain(a.domain).tasks.values()]
    cmd = ["eval", "--model", model, "--data", data, "--episodes", a.eval_episodes, "--seed", a.seed, "--device", a.device, "-q", "--json"]
    for t in tasks:
        cmd += ["--task", t]
    job.run("eval", _fastbfm(*cmd), RESERVE["eval"], parse_json=True)


def pack(job: Job, run: Path) -> None:
    """float16 weights with their config in ``out/model``, and the run's curves beside job.json."""
    import shutil

    import torch

    from fastbfm.bfm.checkpoint import load_model, save_model

    begin = time.monotonic()
    model = load_model(run)
    meta = {**model.meta, "weights_dtype": "float16", "trained_on": job.record.get("machine")}
    save_model(model, job.out / "model", meta=meta, dtype=torch.float16)
    if (run / "metrics.jsonl").is_file():
        shutil.copy(run / "metrics.jsonl", job.out / "metrics.jsonl")
    for i, events in enumerate(sorted(run.glob("events.out.tfevents.*"))[:2]):  # a safe name: only letters, digits, dots come back
        shutil.copy(events, job.out / f"events.out.tfevents.{i}")
    job.record["steps"].append({"step": "pack", "rc": 0, "seconds": round(time.monotonic() - begin, 1),
                                "files": sorted(str(p.relative_to(job.out)) for p in job.out.rglob("*") if p.is_file())})
    job.save()


# (least, most) of each numeric option: the CLI's own bounds (fastbfm.schemas; a test checks they agree),
# written out because the job checks them before it installs anything. --num-envs at most 1,000: a
# collection round of 1,000-step episodes holds num_envs x 1,000 <= MAX_ROUND_STEPS steps.
MAX_JOB_ENVS = 1000
BOUNDS = {
    "seed": (0, 2**32 - 1), "total_minutes": (0.1, 600), "train_minutes": (0.1, 600), "max_updates": (1, 10**9),
    "checkpoint_every": (1, 10**9), "collect_minutes": (0.1, 600), "collect_episodes": (1, 10**6), "num_envs": (1, MAX_JOB_ENVS),
    "eval_episodes": (1, 1000), "threads": (1, 512),
}  # fmt: skip
STEPS = ("bench", "tests")


def _check_args(args: argparse.Namespace) -> str | None:
    """The first problem with the options, or None; paths are made absolute (the steps run from the repository)."""
    if not args.out:
        return "give --out or set OUT"
    for name, (least, most) in BOUNDS.items():
        value = getattr(args, name)
        if value is not None and not least <= value <= most:  # also refuses NaN
            return f"--{name.replace('_', '-')} must be from {least} to {most}, got {value}"
    args.skip = sorted(s for s in args.skip.split(",") if s)
    if unknown := [s for s in args.skip if s not in STEPS]:
        return f"--skip takes {', '.join(STEPS)}, got {', '.join(unknown)}"
    for name in ("out", "work", "data", "wheels"):
        if getattr(args, name) is not None:
            setattr(args, name, str(Path(getattr(args, name)).expanduser().resolve()))
    for name in ("out", "work"):
        if Path(getattr(args, name)).is_file():
            return f"--{name} {getattr(args, name)} is a file, not a folder"
    if args.data is not None and not Path(args.data).is_dir():
        return f"--data {args.data}: no such dataset folder"
    return None


class _OneLineParser(argparse.ArgumentParser):
    """Usage errors in one line, as the CLI's (``error: ...``, exit 2)."""

    def error(self, message: str):
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def main(argv: list[str] | None = None) -> int:
    parser = _OneLineParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--domain", default="walker", help="domain to collect, train and evaluate (default walker)")
    parser.add_argument("--algorithm", default="fb", help="fb, hilp or psm")
    parser.add_argument("--preset", default="paper", help="pretrain preset (default paper: width 1024, batch 1024)")
    parser.add_argument("--device", default="cuda", help="device of training and evaluation (cpu for a rehearsal)")
    parser.add_argument("--seed", type=int, default=0, help="seed of collection, training and evaluation")
    parser.add_argument("--total-minutes", type=float, default=8.0, help="the whole job's budget, install included")
    parser.add_argument("--train-minutes", type=float, default=6.0, help="most training time; the budget may leave less")
    parser.add_argument("--max-updates", type=int, default=10_000_000, help="most updates (the wall time usually ends training first)")
    parser.add_argument("--checkpoint-every", type=int, default=5000, help="updates between checkpoints")
    parser.add_argument("--collect-minutes", type=float, default=2.5, help="most collection time; then the whole rounds so far are kept")
    parser.add_argument("--collect-episodes", type=int, default=None, help="episodes to collect (default: the recipe's, 1M transitions)")
    parser.add_argument("--num-envs", type=int, default=min(MAX_JOB_ENVS, max(50, 8 * (os.cpu_count() or 1))),
                        help="simulations stepped together in collection (one MuJoCo thread per 8; default 8 x cores)")
    parser.add_argument("--data", default=None, help="use this dataset folder instead of collecting")
    parser.add_argument("--eval-episodes", type=int, default=50, help="zero-shot episodes per task (and for the random policy)")
    parser.add_argument("--tasks", default=None, help="comma-separated tasks to evaluate (default: all of the domain's)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads of the trainer (default: all cores)")
    parser.add_argument("--tests", default="tests/test_gpu.py,tests/test_device_cuda.py",
                        help="comma-separated test files run after the rest (the CUDA tests; the missing are left out)")
    parser.add_argument("--skip", default="", help="comma-separated steps to leave out: bench, tests")
    parser.add_argument("--wheels", default=str(ROOT / "wheels"), help="folder of the wheels to install from")
    parser.add_argument("--work", default="job-work", help="scratch folder: site-packages, dataset, run (ignored by git)")
    parser.add_argument("--out", default=os.environ.get("OUT"), help="folder for what comes back (default: $OUT)")
    args = parser.parse_args(argv)
    problem = _check_args(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    job = Job(args)
    ok, run = install(job), None
    if ok:
        describe_machine(job)
        data = collect(job)
        run = pretrain(job, data) if data is not None else None
        if run is not None:
            pack(job, run)
            evaluate(job, job.out / "model", data)
        if "bench" not in args.skip:
            job.run("bench", _fastbfm("bench", "train", "--device", args.device, "--json"), RESERVE["bench"], parse_json=True)
        if "tests" not in args.skip:
            files = [f for f in args.tests.split(",") if f and (ROOT / f).is_file()]
            if files:
                job.run("tests", [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *files], RESERVE["tests"])
            else:
                job.skip("tests", f"none of {args.tests} is in this checkout")
    # a job that trained no model failed, whatever else ran
    job.record["ok"] = ok and run is not None and all(s.get("rc") == 0 for s in job.record["steps"] if "skipped" not in s)
    job.save()
    print(json.dumps({"ok": job.record["ok"], "elapsed_s": job.record["elapsed_s"], "out": str(job.out)}), flush=True)
    return 0 if job.record["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
