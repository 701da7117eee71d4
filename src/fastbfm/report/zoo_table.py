"""The zero-shot table of the shipped zoo.

    python -m fastbfm.report.zoo_table docs/zero_shot.md

reads each shipped model's ``zero_shot.json`` (written with its card by ``fastbfm.report.card``) and
writes one markdown table per domain: the random policy and every shipped model.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

from fastbfm.io import read_json
from fastbfm.report.card import ZERO_SHOT
from fastbfm.zoo import ZOO_DIR, shipped_models


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
        lines += [f"## {domain}", "", "| task | random | " + " | ".join(f"`{n}`" for n in names) + " |"]
        lines.append("|---" * (2 + len(names)) + "|")
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
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        for n in names:
            rows = models[n].values()
            # a return under 1 (less than one rewarded step) counts as no success, however small the random one
            twice = sum(r["zero_shot"] >= 2 * r["random"] and r["zero_shot"] >= 1 for r in rows)
            lines.append(f"- `{n}`: zero-shot at least twice the random policy's return (and at least 1) on {twice} of {len(rows)} tasks.")
        lines.append("")
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
