"""Ship a trained run into the zoo with a model card of measured figures.

    python -m fastbfm.report.card RUN_DIR NAME --domain point_mass_maze

copies the run's ``model.safetensors`` and ``config.json`` into ``src/fastbfm/zoo/NAME`` and writes
``MODEL_CARD.md``: data, preset, updates, wall time, zero-shot and random-policy returns per task.
"""

from __future__ import annotations

import argparse
import platform
import shutil
from datetime import date
from pathlib import Path

import torch

from fastbfm.bfm.checkpoint import FORMAT_VERSION, read_json, write_json
from fastbfm.data import ensure_dataset
from fastbfm.envs import get_domain, get_task, list_tasks
from fastbfm.errors import FastBFMError
from fastbfm.evaluate.experiments import zero_shot
from fastbfm.models import load_model
from fastbfm.schemas import ModelConfigFile
from fastbfm.zoo import ZOO_DIR

ZERO_SHOT = "zero_shot.json"
"""Next to each shipped model: its card's zero-shot rows, read by :mod:`fastbfm.report.zoo_table`."""
ZOO_EPISODES = 50
"""Evaluation episodes per task of the zoo's zero-shot tables: 10 left the random baseline's mean too noisy
(quadruped stand: std 293 around a mean of 112), so the 2x-random count could flip on one start state."""
ZERO_SHOT_HEADING = "## Zero-shot returns ({episodes} episodes per task, seeded start states; mean +- std)"


def write_zero_shot(model, target: Path, name: str, domain: str, dataset, episodes: int = ZOO_EPISODES) -> list[dict]:
    """Zero-shot and random-policy returns on every task of the domain, saved as ``target/zero_shot.json``."""
    rows = zero_shot(model, [get_task(t) for t in list_tasks(domain)], dataset, episodes=episodes)
    write_json(target / ZERO_SHOT, {"format_version": FORMAT_VERSION, "model": name, "episodes": episodes, "rows": rows})
    return rows


def write_card(run_dir: Path, name: str, domain: str, episodes: int = ZOO_EPISODES, notes: list[str] | None = None) -> Path:
    """``notes``: provenance lines for the card (how the checkpoint was chosen); default: the final one."""
    torch.set_num_threads(1)
    model = load_model(run_dir)
    meta = model.meta
    dataset = ensure_dataset(domain, progress=False)
    target = ZOO_DIR / name
    target.mkdir(parents=True, exist_ok=True)
    rows = write_zero_shot(model, target, name, domain, dataset, episodes)
    shutil.copy(run_dir / "model.safetensors", target / "model.safetensors")
    shutil.copy(run_dir / "config.json", target / "config.json")
    config = read_json(target / "config.json", ModelConfigFile)
    if config["meta"].get("domain") != domain:
        config["meta"]["domain"] = domain
        write_json(target / "config.json", config)
    train = meta.get("train", {})
    sizes = ", ".join(f"{k.replace('_dim', '').replace('_', ' ')} {v}" for k, v in config["model"].items() if k.endswith("_dim") and k not in ("obs_dim", "action_dim"))
    partition = get_domain(domain).partition
    coverage = (
        f"; fraction of states per {partition.name}: " + ", ".join(f"{k} {v:.2f}" for k, v in partition.shares(dataset.next_obs).items())
        if partition is not None
        else ""
    )
    rates = ", ".join(f"{k[3:]} {v}" for k, v in train.items() if k.startswith("lr_"))
    lines = [
        f"# {name}",
        "",
        f"{config['algorithm'].upper()} on `{domain}`, preset `{meta.get('preset')}`: {sizes}, "
        f"ensemble of {config['model']['ensemble_size']} successor-measure heads.",
        "",
        "## Training",
        "",
        f"- data: {meta.get('dataset_transitions')} reward-free transitions from `fastbfm collect --domain {domain}` "
        f"(the default explorer, seed 0, {dataset.num_episodes} episodes){coverage}",
        f"- updates: {meta.get('updates')} at batch {train.get('batch_size')}, discount {train.get('discount')}, "
        f"learning rates {rates}, seed {meta.get('seed')}",
        f"- wall time: {meta.get('wall_time_s')} s on 2 CPU cores ({platform.processor() or platform.machine()}), "
        "shared with other work at times, so an upper bound",
        *(
            [f"- continued from `{meta['init_from']['checkpoint']}` ({meta['init_from']['updates']} updates before) with fresh "
             "optimisers and targets copied from it: the updates above come on top"]
            if meta.get("init_from")
            else []
        ),
        *[f"- {note}" for note in (notes or ["the final checkpoint of the run (no checkpoint selection on tasks)"])],
        "",
    ]
    command = f"python -m fastbfm.report.card {run_dir} {name} --domain {domain} --episodes {episodes}"
    (target / "MODEL_CARD.md").write_text("\n".join(lines + zero_shot_section(rows, episodes, name, command)))
    return target


def zero_shot_section(rows: list[dict], episodes: int, name: str, command: str) -> list[str]:
    """The card's last section: zero-shot beside random per task, and how it was measured."""
    return [
        ZERO_SHOT_HEADING.format(episodes=episodes),
        "",
        "Latent from 50k dataset samples relabelled with the task's reward. Random policy: uniform actions "
        "from the same start states. Returns lie in [0, 1000].",
        "",
        "| task | zero-shot | random | zero-shot / random |",
        "|---|---|---|---|",
        *[
            f"| {r['task']} | {r['zero_shot']:.1f} +- {r['zero_shot_std']:.1f} | {r['random']:.1f} +- {r['random_std']:.1f} | "
            + (f"{r['zero_shot'] / r['random']:.2f}x |" if r["random"] >= 0.05 else "- |")
            for r in rows
        ],
        "",
        f"Measured {date.today().isoformat()} with `{command}`; "
        f"rerun `fastbfm eval --model {name} --task <task> --episodes {episodes}` for the same figures.",
        "",
    ]


def rewrite_zero_shot(model, name: str, domain: str, episodes: int) -> Path:
    """Re-measure a shipped model's zero-shot returns; rewrite ``zero_shot.json`` and the card's zero-shot section."""
    target = ZOO_DIR / name
    card = target / "MODEL_CARD.md"
    text = card.read_text()
    heading = ZERO_SHOT_HEADING.split(" (")[0]
    cut = text.find(heading)
    if cut < 0:
        raise FastBFMError(f"{card} has no '{heading}' section to rewrite")
    rows = write_zero_shot(model, target, name, domain, ensure_dataset(domain, progress=False), episodes)
    command = f"python -m fastbfm.report.card {name} {name} --zero-shot-only --episodes {episodes}"
    card.write_text(text[:cut] + "\n".join(zero_shot_section(rows, episodes, name, command)))
    return card


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="a run folder (with --zero-shot-only: also a shipped model's name)")
    parser.add_argument("name")
    parser.add_argument("--domain", default=None, help="default: the one the run was trained on")
    parser.add_argument("--episodes", type=int, default=ZOO_EPISODES)
    parser.add_argument("--note", action="append", help="a provenance line for the card (repeatable)")
    parser.add_argument("--zero-shot-only", action="store_true", help="only re-measure a shipped model: rewrite its zero_shot.json and its card's zero-shot section")
    args = parser.parse_args()
    if args.zero_shot_only:
        torch.set_num_threads(1)
        model = load_model(args.run_dir)  # a shipped model by its name, or a folder
        print(rewrite_zero_shot(model, args.name, args.domain or model.meta["domain"], args.episodes))
        return
    domain = args.domain or load_model(args.run_dir).meta["domain"]
    print(write_card(args.run_dir, args.name, domain, args.episodes, args.note))


if __name__ == "__main__":
    main()
