"""fastbfm's FB against Meta Motivo's own FBAgent at equal compute: same data, sizes, hyper-parameters,
updates and thread count, zero-shot through the same `fastbfm eval`.

    pip install --no-deps <a checkout of facebookresearch/metamotivo>   # the baseline (not a dependency)
    python experiments/parity_metamotivo.py --domain point_mass_maze --data data/point_mass_maze/explore \
        --runs runs/parity --seeds 0 1 2 --updates 30000 --episodes 50
    python experiments/parity_metamotivo.py --domain walker --data data/walker/explore --runs runs/parity \
        --discount 0.98 --task walker:my_rewards:walk_backward ...   # PYTHONPATH=examples for user rewards

Per (seed, implementation): fastbfm trains with `fastbfm pretrain --preset P --threads 1` (its default
precision for that preset); Meta Motivo's FBAgent (`fastbfm.bench.metamotivo_fb_agent`, the preset's
widths, batch and latent size, its own defaults otherwise) trains in this process on one torch thread
from the same transitions and is saved in its agent layout, which `fastbfm eval` loads. Finished
evaluations are kept in RUNS/results.jsonl, so a rerun does only what is missing (a Meta Motivo run cut
off before its save starts again). Prints, per task, each implementation's mean over seeds with its
standard error, the paired difference fastbfm - Meta Motivo with its standard error, and the random
policy. ``--label`` names the fastbfm rows, so that two versions of fastbfm (another checkout on
PYTHONPATH) are compared with one set of Meta Motivo runs.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
from pathlib import Path

from runlog import append_row, read_rows, run_fastbfm

import torch
from tqdm import tqdm

from fastbfm.bench import metamotivo_fb_agent
from fastbfm.bfm.algorithms import preset
from fastbfm.data.dataset import load_dataset
from fastbfm.envs import list_tasks




def train_metamotivo(data_dir: Path, out: Path, preset_name: str, updates: int, seed: int, discount: float) -> float:
    """Train FBAgent on the dataset's transitions; returns the training wall time in seconds."""
    from metamotivo.buffers.buffers import DictBuffer

    torch.set_num_threads(1)
    dataset = load_dataset(data_dir)
    model_config, train_config = preset("fb", preset_name, dataset.obs_dim, dataset.action_dim)
    torch.manual_seed(seed)
    agent = metamotivo_fb_agent(
        dataset.obs_dim, dataset.action_dim, model_config.hidden_dim, train_config.batch_size, model_config.z_dim, "cpu", discount
    )
    buffer = DictBuffer(capacity=len(dataset), device="cpu")
    buffer.extend(
        {
            "observation": dataset.obs.astype("float32"),
            "action": dataset.action.astype("float32"),
            "next": {"observation": dataset.next_obs.astype("float32"), "terminated": (dataset.discount == 0).reshape(-1, 1)},
        }
    )
    replay = {"train": buffer}
    start = time.perf_counter()
    for step in tqdm(range(updates), desc=f"metamotivo s{seed}", mininterval=10):
        agent.update(replay, step)
    wall = time.perf_counter() - start
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    agent.save(str(partial))
    (partial / "optimizers.pth").unlink()  # a pickle, and not needed for inference
    (partial / "wall_time_s").write_text(f"{wall:.1f}\n")
    partial.rename(out)
    return wall


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--domain", required=True)
    p.add_argument("--data", required=True, type=Path)
    p.add_argument("--runs", required=True, type=Path)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--updates", type=int, default=30_000)
    p.add_argument("--preset", default="cpu")
    p.add_argument("--discount", type=float, default=0.99)
    p.add_argument("--episodes", type=int, default=50)
    p.add_argument("--task", action="append", default=[], help="extra tasks beyond the domain's built-in ones")
    p.add_argument("--label", default="fastbfm", help="name of the fastbfm rows (compare versions of fastbfm: PYTHONPATH=<checkout>/src)")
    a = p.parse_args()
    tasks = [t for t in list_tasks() if t.split(":")[0] == a.domain] + a.task
    a.runs.mkdir(parents=True, exist_ok=True)
    log = a.runs / "results.jsonl"
    rows = read_rows(log)
    setting = (a.domain, a.preset, a.updates, a.discount)
    done = {(r["domain"], r["preset"], r["updates"], r["discount"], r["seed"], r["implementation"]) for r in rows}
    for seed in a.seeds:
        for implementation in (a.label, "metamotivo"):
            if (*setting, seed, implementation) in done:
                continue
            run = a.runs / f"{a.domain}-{a.preset}-{a.updates}-g{a.discount}-s{seed}-{implementation}"
            if implementation != "metamotivo":
                run_fastbfm("pretrain", "--data", str(a.data), "--out", str(run), "--preset", a.preset, "--updates", str(a.updates),
                         "--seed", str(seed), "--threads", "1", "--discount", str(a.discount), "-q", "--json")  # fmt: skip
                wall = json.loads((run / "config.json").read_text())["meta"]["wall_time_s"]
            elif (run / "wall_time_s").exists():
                wall = float((run / "wall_time_s").read_text())
            else:
                wall = train_metamotivo(a.data, run, a.preset, a.updates, seed, a.discount)
            task_args = [x for t in tasks for x in ("--task", t)]
            result = json.loads(run_fastbfm("eval", "--model", str(run), *task_args, "--data", str(a.data), "--episodes", str(a.episodes), "--json"))
            row = {"domain": a.domain, "preset": a.preset, "updates": a.updates, "discount": a.discount, "seed": seed,
                   "implementation": implementation, "wall_time_s": wall, "episodes": a.episodes,
                   "returns": {r["task"]: r["zero_shot"] for r in result["results"]},
                   "random": {r["task"]: r["random"] for r in result["results"]}}  # fmt: skip
            append_row(log, row)
            rows.append(row)
    by = {(r["seed"], r["implementation"]): r for r in rows if (r["domain"], r["preset"], r["updates"], r["discount"]) == setting}
    labels = sorted({i for _, i in by if i != "metamotivo"})
    seeds = sorted({s for s, _ in by if all((s, i) in by for i in [*labels, "metamotivo"])})
    if not seeds:
        return
    print(f"\n{a.domain}, preset {a.preset}, {a.updates} updates, discount {a.discount}, seeds {seeds}, {a.episodes} episodes per task")
    print(f"{'task':40s} {'metamotivo':>14s} " + " ".join(f"{x:>14s} {'- metamotivo':>14s}" for x in labels) + f" {'random':>7s}")

    def mean_se(values: list[float]) -> str:
        se = statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else float("nan")
        return f"{statistics.mean(values):6.1f} +- {se:5.1f}"

    for task in tasks:
        theirs = [by[s, "metamotivo"]["returns"][task] for s in seeds]
        cells = [mean_se(theirs)]
        for label in labels:
            ours = [by[s, label]["returns"][task] for s in seeds]
            cells += [mean_se(ours), mean_se([o - t for o, t in zip(ours, theirs)])]
        rnd = statistics.mean(by[s, "metamotivo"]["random"][task] for s in seeds)
        print(f"{task:40s} " + " ".join(f"{c:>14s}" for c in cells) + f" {rnd:7.1f}")
    for implementation in [*labels, "metamotivo"]:
        wall = statistics.mean(by[s, implementation]["wall_time_s"] for s in seeds)
        print(f"mean training wall time {implementation}: {wall:.0f} s")


if __name__ == "__main__":
    main()
