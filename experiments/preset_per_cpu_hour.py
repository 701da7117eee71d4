"""Which FB preset is best for a fixed budget of CPU time: zero-shot against wall-clock, judged on rewards
outside the 16 tasks.

    PYTHONPATH=examples python experiments/preset_per_cpu_hour.py --domain walker --data data/walker/explore \
        --runs runs/presets --minutes 60 --checkpoints 15 30 45 60 --preset cpu --preset wide --preset paper \
        --seeds 0 1 2 --discount 0.98 \
        --task walker:my_rewards:walk_backward --task walker:my_rewards:walk_slow --task walker:my_rewards:flip_forward

Per (preset, seed): `fastbfm pretrain --max-minutes` in slices (each checkpoint minute a rerun resumes to),
each precision at its default for the preset (bf16 where the CPU has it natively and the networks are
512+ wide), one torch thread; after each slice, `fastbfm eval` on the given tasks (50 episodes). Rows
go to RUNS/results.jsonl (a rerun does only what is missing, and resumes a run cut off mid-slice). The
table: per preset and minute, the updates reached and the mean over seeds of the mean return over the
tasks, with its standard error. Choose the preset on these tasks, never on the 16.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from runlog import append_row, read_rows, run_fastbfm



def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--domain", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--runs", required=True, type=Path)
    p.add_argument("--preset", action="append", required=True)
    p.add_argument("--checkpoints", type=float, nargs="+", required=True, help="minutes of training at which to evaluate")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--discount", type=float, default=None)
    p.add_argument("--episodes", type=int, default=50)
    p.add_argument("--task", action="append", required=True, help="tasks outside the 16 (repeat)")
    a = p.parse_args()
    a.runs.mkdir(parents=True, exist_ok=True)
    log = a.runs / "results.jsonl"
    rows = read_rows(log)
    done = {(r["domain"], r["preset"], r["seed"], r["minutes"]) for r in rows}
    for preset in a.preset:
        for seed in a.seeds:
            run = a.runs / f"{a.domain}-{preset}-s{seed}"
            for minutes in sorted(a.checkpoints):
                if (a.domain, preset, seed, minutes) in done:
                    continue
                trained = 0.0
                if (run / "config.json").exists():
                    trained = json.loads((run / "config.json").read_text())["meta"].get("wall_time_s", 0.0) / 60
                extra = ["--discount", str(a.discount)] if a.discount is not None else []
                run_fastbfm("pretrain", "--data", a.data, "--out", str(run), "--preset", preset, "--updates", "1000000000", "--seed", str(seed),
                     "--threads", "1", "--max-minutes", f"{max(minutes - trained, 0.01):.3f}", *extra, "-q", "--json")  # fmt: skip
                meta = json.loads((run / "config.json").read_text())["meta"]
                task_args = [x for t in a.task for x in ("--task", t)]
                result = json.loads(run_fastbfm("eval", "--model", str(run), *task_args, "--data", a.data, "--episodes", str(a.episodes), "--json"))
                row = {"domain": a.domain, "preset": preset, "seed": seed, "minutes": minutes, "updates": meta["updates"],
                       "wall_time_s": meta["wall_time_s"], "precision": meta["history"][-1]["precision"],
                       "returns": {r["task"]: r["zero_shot"] for r in result["results"]}}  # fmt: skip
                append_row(log, row)
                rows.append(row)
    print(f"\n{a.domain}: mean return over {len(a.task)} tasks outside the 16, mean over seeds +- standard error")
    print(f"{'preset':8s} {'minutes':>8s} {'updates':>9s} {'precision':>9s} {'return':>16s}")
    for preset in a.preset:
        for minutes in sorted(a.checkpoints):
            mine = [r for r in rows if (r["domain"], r["preset"], r["minutes"]) == (a.domain, preset, minutes)]
            if not mine:
                continue
            means = [statistics.mean(r["returns"].values()) for r in mine]
            se = statistics.stdev(means) / len(means) ** 0.5 if len(means) > 1 else float("nan")
            updates = statistics.mean(r["updates"] for r in mine)
            print(f"{preset:8s} {minutes:8g} {updates:9.0f} {mine[0]['precision']:>9s} {statistics.mean(means):9.1f} +- {se:5.1f}")


if __name__ == "__main__":
    main()
