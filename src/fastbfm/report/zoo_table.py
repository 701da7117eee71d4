"""The zero-shot table of the shipped zoo, beside published zero-shot numbers.

    python -m fastbfm.report.zoo_table docs/zero_shot.md

reads each shipped model's ``zero_shot.json`` (written with its card by ``fastbfm.report.card``) and
writes one markdown table per domain: random policy, every shipped model, and published FB returns on
ExORL data where a source gives them (paper scale: width 1024, 1M+ updates, 10M transitions).
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

from fastbfm.io import read_json
from fastbfm.report.card import ZERO_SHOT
from fastbfm.zoo import ZOO_DIR, shipped_models

# Published zero-shot returns used as targets: only figures read in the paper's text [V] or in a garbled
# table whose task order was checked against the paper's own domain mean [V-parse]. Cheetah and maze
# per-task figures of the same table fail that check [T] and are left out.
FB_TD_FLOWS = "published FB"
PUBLISHED: dict[str, dict[str, tuple[float, str]]] = {
    FB_TD_FLOWS: {
        "walker:stand": (852.55, "V-parse"),
        "walker:walk": (588.74, "V-parse"),
        "walker:run": (326.94, "V-parse"),
        "quadruped:stand": (896.43, "V-parse"),
        "quadruped:walk": (476.34, "V-parse"),
        "quadruped:run": (452.38, "V-parse"),
        "quadruped:jump": (683.96, "V-parse"),
    },
}
"""Column name -> {task: (mean return, trust tag)}; each column's source is in SOURCES."""

SOURCES: dict[str, str] = {
    FB_TD_FLOWS: (
        "FB on ExORL's RND data (10M transitions), Meta's re-implementation at paper scale: Farebrother et al., "
        "\"Temporal Difference Flows\", ICML 2025, appendix Table 17 (per task; domain means in Table 15, which "
        "the per-task figures reproduce exactly); 3 seeds, 100 episodes per task. Tags: V-parse = read in a "
        "garbled table, task order checked against the paper's domain mean."
    ),
}


def zoo_rows() -> dict[str, dict[str, dict]]:
    """model name -> task -> its zero-shot row."""
    out = {}
    for name in shipped_models():
        path = ZOO_DIR / name / ZERO_SHOT
        if path.is_file():
            out[name] = {row["task"]: row for row in read_json(path)["rows"]}
    return out


def zoo_table() -> str:
    models = zoo_rows()
    by_domain: dict[str, list[str]] = defaultdict(list)
    for name, rows in models.items():
        by_domain[next(iter(rows)).split(":")[0]].append(name)
    lines = []
    for domain in sorted(by_domain):
        names = by_domain[domain]
        tasks = sorted({t for n in names for t in models[n]})
        published = [c for c in PUBLISHED if any(t in PUBLISHED[c] for t in tasks)]
        lines += [f"## {domain}", "", "| task | random | " + " | ".join(f"`{n}`" for n in names) + "".join(f" | {c}" for c in published) + " |"]
        lines.append("|---" * (2 + len(names) + len(published)) + "|")
        for task in tasks:
            random = next(models[n][task]["random"] for n in names if task in models[n])
            cells = [task.split(":")[1], f"{random:.1f}"]
            for n in names:
                row = models[n].get(task)
                if row is None:
                    cells.append("-")
                    continue
                # a ratio to a return that rounds to 0.0 says nothing
                ratio = f" ({row['zero_shot'] / random:.2f}x)" if random >= 0.05 else ""
                cells.append(f"{row['zero_shot']:.1f} +- {row['zero_shot_std']:.1f}{ratio}")
            cells += [f"{PUBLISHED[c][task][0]:.0f} [{PUBLISHED[c][task][1]}]" if task in PUBLISHED[c] else "-" for c in published]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        for n in names:
            rows = models[n].values()
            # a return under 1 (less than one rewarded step) counts as no success, however small the random one
            twice = sum(r["zero_shot"] >= 2 * r["random"] and r["zero_shot"] >= 1 for r in rows)
            lines.append(f"- `{n}`: zero-shot at least twice the random policy's return (and at least 1) on {twice} of {len(rows)} tasks.")
            for c in published:
                shares = [f"{r['task'].split(':')[1]} {r['zero_shot'] / PUBLISHED[c][r['task']][0]:.0%}" for r in rows if r["task"] in PUBLISHED[c]]
                if shares:
                    lines.append(f"- `{n}` against {c}: " + ", ".join(shares) + ".")
        lines.append("")
    if SOURCES:
        lines += ["Sources of the published columns:", ""] + [f"- {c}: {src}" for c, src in SOURCES.items()] + [""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="markdown file to write; the header above the first '## ' is kept")
    args = parser.parse_args()
    header = ""
    if args.out.is_file():
        text = args.out.read_text()
        header = text[: text.index("\n## ") + 1] if "\n## " in text else text
    args.out.write_text(header + zoo_table())
    print(args.out)


if __name__ == "__main__":
    main()
