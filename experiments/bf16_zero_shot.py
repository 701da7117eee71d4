"""Zero-shot of FB trained in bf16 against float32 at equal updates (same data, seed, batches, latents).

    python experiments/bf16_zero_shot.py --domain point_mass_maze --data data/point_mass_maze/explore \
        --runs runs/bf16 --seeds 0 1 2 --updates 10000 --episodes 50
    python experiments/bf16_zero_shot.py --domain walker --data data/walker/explore --runs runs/bf16 ... \
        --task walker:my_rewards:walk_backward   # rewards beyond the built-in tasks (PYTHONPATH=examples)

Each (seed, precision) is one `fastbfm pretrain` (rerun to resume; 1 torch thread) and one
`fastbfm eval` (50 episodes per task by default, random policy beside). Finished evaluations are kept
in RUNS/results.jsonl, so a rerun does only what is missing. Prints a table: per task, the mean over
seeds of each precision, the paired difference bf16 - fp32 and its standard error over seeds.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from runlog import append_row, read_rows, run_fastbfm

from fastbfm.envs import list_tasks



def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--domain", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--runs", required=True, type=Path)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--updates", type=int, default=10_000)
    p.add_argument("--preset", default="cpu")
    p.add_argument("--episodes", type=int, default=50)
    p.add_argument("--task", action="append", default=[], help="extra tasks beyond the domain's built-in ones")
    a = p.parse_args()
    tasks = [t for t in list_tasks() if t.split(":")[0] == a.domain] + a.task
    a.runs.mkdir(parents=True, exist_ok=True)
    log = a.runs / "results.jsonl"
    rows = read_rows(log)
    done = {(r["domain"], r["preset"], r["updates"], r["seed"], r["precision"]) for r in rows}
    for seed in a.seeds:
        for precision in ("fp32", "bf16"):
            key = (a.domain, a.preset, a.updates, seed, precision)
            if key in done:
                continue
            run = a.runs / f"{a.domain}-{a.preset}-{a.updates}-s{seed}-{precision}"
            flag = "--bf16" if precision == "bf16" else "--no-bf16"
            run_fastbfm("pretrain", "--data", a.data, "--out", str(run), "--preset", a.preset, "--updates", str(a.updates),
                 "--seed", str(seed), "--threads", "1", flag, "-q", "--json")  # fmt: skip
            meta = json.loads((run / "config.json").read_text())["meta"]
            task_args = [x for t in tasks for x in ("--task", t)]
            result = json.loads(run_fastbfm("eval", "--model", str(run), *task_args, "--data", a.data, "--episodes", str(a.episodes), "--json"))
            row = {"domain": a.domain, "preset": a.preset, "updates": a.updates, "seed": seed, "precision": precision,
                   "wall_time_s": meta["wall_time_s"], "returns": {r["task"]: r["zero_shot"] for r in result["results"]},
                   "random": {r["task"]: r["random"] for r in result["results"]}}  # fmt: skip
            append_row(log, row)
            rows.append(row)
    mine = [r for r in rows if (r["domain"], r["preset"], r["updates"]) == (a.domain, a.preset, a.updates)]
    by = {(r["seed"], r["precision"]): r for r in mine}
    seeds = sorted({s for s, _ in by if (s, "fp32") in by and (s, "bf16") in by})
    if not seeds:
        return
    print(f"\n{a.domain}, preset {a.preset}, {a.updates} updates, seeds {seeds}, {a.episodes} episodes per task")
    print(f"{'task':40s} {'fp32':>8s} {'bf16':>8s} {'bf16-fp32':>10s} {'se':>7s} {'random':>7s}")
    for task in tasks:
        fp = [by[s, "fp32"]["returns"][task] for s in seeds]
        bf = [by[s, "bf16"]["returns"][task] for s in seeds]
        diff = [b - f for b, f in zip(bf, fp)]
        se = statistics.stdev(diff) / len(diff) ** 0.5 if len(diff) > 1 else float("nan")
        rnd = statistics.mean(by[s, "fp32"]["random"][task] for s in seeds)
        print(f"{task:40s} {statistics.mean(fp):8.1f} {statistics.mean(bf):8.1f} {statistics.mean(diff):10.1f} {se:7.1f} {rnd:7.1f}")
    for precision in ("fp32", "bf16"):
        wall = statistics.mean(by[s, precision]["wall_time_s"] for s in seeds)
        print(f"mean training wall time {precision}: {wall:.0f} s")


if __name__ == "__main__":
    main()
