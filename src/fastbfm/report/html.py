"""One self-contained HTML page per run folder: result tables, adaptation curves and before/after videos.

Images and videos are embedded as base64 data URIs, so ``report.html`` can be mailed or archived alone.
"""

from __future__ import annotations

import base64
import html
import io
import json
from datetime import datetime, timezone
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from fastbfm import __version__  # noqa: E402
from fastbfm.adapt.methods import label  # noqa: E402
from fastbfm.io import write_text  # noqa: E402
from fastbfm.report.run import RESULTS, VIDEOS, load_run, result_method, results_path, video_name  # noqa: E402

MIME = {".png": "image/png", ".gif": "image/gif", ".mp4": "video/mp4"}
SUMMARY_COLUMNS = (
    ("task", "task"),
    ("method", "method"),
    ("start", "start"),
    ("seeds", "seeds"),
    ("budget (episodes)", "budget"),
    ("zero-shot", "zero_shot"),
    ("final", "final"),
    ("final std", "final_std"),
    ("change %", "change_pct"),
    ("lowest", "lowest"),
    ("lowest vs zero-shot %", "lowest_vs_zero_shot_pct"),
    ("worst paired point vs zero-shot", "paired_worst"),
    ("95% CI", "paired_worst_ci"),
    ("paired dip", "paired_dip"),
    ("final vs zero-shot, 95% CI", "paired_final_ci"),
)

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2em auto;max-width:1200px;padding:0 1em;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em}
th,td{border:1px solid #ccc;padding:.25em .6em}th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}
td.up{color:#17702a}td.down{color:#b3261e}
figure{margin:1em 0}figcaption{font-size:.85em;color:#555}img,video{max-width:100%}
.meta{color:#555;font-size:.9em}pre{background:#f6f6f6;padding:.5em;overflow-x:auto;font-size:.8em}
"""


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _method(r: dict) -> str:
    return result_method(r)


def _number(x):
    return int(x) if float(x).is_integer() else float(x)


def summary_rows(results: list[dict]) -> list[dict]:
    """The numbers of the summary table, per task and method, straight from ``results.json``."""
    return [
        {
            "task": r["task"],
            "method": _method(r),
            "start": r.get("start", "zero-shot"),
            "seeds": len(r["curves"]),
            "budget": _number(r["episodes"][-1]) if r["episodes"] else 0,
            "zero_shot": r["zero_shot"],
            "final": r["final"],
            "final_std": r.get("final_std"),
            "change_pct": r.get("change_pct"),
            "lowest": r.get("lowest"),
            "lowest_vs_zero_shot_pct": r.get("lowest_vs_zero_shot_pct"),
            **_paired_columns(r.get("paired")),
        }
        for r in results
    ]


def _paired_columns(paired: dict | None) -> dict:
    """The honest dip statistic (``fastbfm.evaluate.paired``): the point whose paired interval against zero-shot
    reaches lowest, whether that whole interval is below zero, and the final point's interval."""
    if not paired:
        return {"paired_worst": None, "paired_worst_ci": None, "paired_dip": None, "paired_final_ci": None}
    later = range(1, len(paired["high"])) or range(1)  # point 0 is zero-shot itself
    worst = min(later, key=lambda i: paired["difference"][i])
    return {
        "paired_worst": paired["difference"][worst],
        "paired_worst_ci": f"[{paired['low'][worst]:+.1f}, {paired['high'][worst]:+.1f}]",
        "paired_dip": "yes" if any(paired["high"][i] < 0 for i in later) else "no",
        "paired_final_ci": f"{paired['difference'][-1]:+.1f} [{paired['low'][-1]:+.1f}, {paired['high'][-1]:+.1f}]",
    }


def _cell(value, key: str) -> str:
    if value is None:
        return '<td class="num">-</td>'
    if isinstance(value, float):
        cls = "num"
        if key in ("change_pct", "lowest_vs_zero_shot_pct") and value:
            cls += " up" if value > 0 else " down"
        text = f"{value:+.1f}" if key.endswith("pct") else f"{value:.1f}"
        return f'<td class="{cls}" data-value="{value!r}">{text}</td>'
    if isinstance(value, int):
        return f'<td class="num" data-value="{value}">{value}</td>'
    return f"<td>{html.escape(str(value))}</td>"


def _table(table_id: str, header: list[str], keys: list[str], rows: list[dict]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "\n".join("<tr>" + "".join(_cell(row[k], k) for k in keys) + "</tr>" for row in rows)
    return f'<table id="{table_id}">\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>'


def seed_rows(results: list[dict]) -> list[dict]:
    rows = []
    for r in results:
        seeds = r.get("seeds") or list(range(len(r["curves"])))
        for seed, curve in zip(seeds, r["curves"]):
            rows.append({"task": r["task"], "method": _method(r), "seed": seed, "zero_shot": float(curve[0]),
                         "final": float(curve[-1]), "lowest": float(min(curve)), "best": float(max(curve))})
    return rows


def curves_png(results: list[dict]) -> bytes:
    """One panel per task, one line per method: mean over seeds, min-max band, zero-shot dashed."""
    tasks = list(dict.fromkeys(r["task"] for r in results))
    methods = list(dict.fromkeys(_method(r) for r in results))
    cols = min(len(tasks), 4)
    rows = -(-len(tasks) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.8 * cols, 3.1 * rows), squeeze=False)
    for ax, task in zip(axes.flat, tasks):
        top = 10.0
        for r in (r for r in results if r["task"] == task):
            ys = np.asarray(r["curves"], dtype=float)
            x = np.asarray(r["episodes"], dtype=float)
            color = f"C{methods.index(_method(r))}"
            ax.plot(x, ys.mean(0), color=color, label=label(_method(r)))
            ax.fill_between(x, ys.min(0), ys.max(0), color=color, alpha=0.2, linewidth=0)
            ax.axhline(ys[:, 0].mean(), color=color, linestyle="--", linewidth=0.8, alpha=0.7)
            top = max(top, 1.05 * float(ys.max()))
        ax.set_ylim(bottom=0.0, top=top)
        ax.set_title(task, fontsize=9)
        ax.set_xlabel("adaptation episodes")
        ax.set_ylabel("return")
    for ax in list(axes.flat)[len(tasks):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=8, title="dashed: zero-shot", title_fontsize=7)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


def find_videos(run_dir: Path, results: list[dict] | None = None) -> list[Path]:
    """GIF and MP4 files in the run folder (placed there by the user) and in its ``videos/`` folder; of
    the latter, given ``results``, only those of a task and method the results hold now (a video of a
    method since dropped from results.json is stale)."""
    found = [p for folder in (run_dir, run_dir / VIDEOS) if folder.is_dir() for p in sorted(folder.iterdir())]
    videos = [p for p in found if p.is_file() and p.suffix.lower() in (".gif", ".mp4") and not p.name.startswith(".")]
    if results is None:
        return videos
    current = {video_name(r, tail + ext) for r in results for tail in ("", "-evolution") for ext in (".gif", ".mp4")}
    return [p for p in videos if p.parent != run_dir / VIDEOS or p.name in current]


def _video_html(path: Path, caption: str) -> str:
    uri = data_uri(path.read_bytes(), MIME[path.suffix.lower()])
    if path.suffix.lower() == ".mp4":
        media = f'<video controls autoplay loop muted playsinline src="{uri}"></video>'
    else:
        media = f'<img alt="{html.escape(path.name)}" src="{uri}">'
    return f"<figure>{media}<figcaption>{html.escape(caption)}</figcaption></figure>"


def build_report(run_dir: str | Path, video_notes: dict[str, str] | None = None) -> str:
    """The HTML text of the report of ``run_dir`` (a run folder, or a results.json inside one)."""
    source = results_path(run_dir)
    run_dir = source.parent
    payload = load_run(source)
    results = payload["results"]
    model = payload.get("model", "?")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>fastbfm report: {html.escape(run_dir.name)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>fastbfm report: {html.escape(run_dir.resolve().name)}</h1>",
        '<p class="meta">'
        f"model <b>{html.escape(str(model))}</b> &middot; {len(results)} run{'' if len(results) == 1 else 's'} (task x method) &middot; "
        + (f"wall time {payload['wall_time_s']} s &middot; " if "wall_time_s" in payload else "")
        + f"written {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')} by fastbfm {__version__} from "
        f"<code>{html.escape(str(source))}</code></p>",
        "<h2>Results</h2>",
        "<p>Mean evaluation return over seeds (each seed: the mean of its evaluation episodes) of the zero-shot "
        "latent and of the latent after the whole adaptation budget; <i>lowest</i> is the lowest point of the mean "
        "curve (the old dip statistic: the minimum of noisy points lies below the true curve even when nothing changes). "
        "<i>Paired</i>: every point minus zero-shot on the same start states, with a 95% bootstrap interval over start "
        "states; a run <i>dips</i> only where a whole interval lies below zero. Returns lie in [0, 1000].</p>",
        _table("summary", [h for h, _ in SUMMARY_COLUMNS], [k for _, k in SUMMARY_COLUMNS], summary_rows(results)),
        "<h2>Adaptation curves</h2>",
        f'<figure><img id="curves" alt="adaptation curves" src="{data_uri(curves_png(results), "image/png")}">'
        "<figcaption>Evaluation return against adaptation episodes spent: mean of seeds, min-max band; dashed: "
        "the zero-shot return of each method's start.</figcaption></figure>",
    ]
    videos = find_videos(run_dir, results)
    parts.append("<h2>Videos: before / after, and the policy evolving during adaptation</h2>")
    if videos:
        notes = video_notes or {}
        parts.append("<p>One episode each, all panels from the same seeded start state; the returns in the labels are "
                     "that episode's, while the tables average over seeds and evaluation episodes.</p>")
        parts += [_video_html(v, notes.get(v.name, v.name)) for v in videos]
    else:
        parts.append(f"<p>No videos in this run folder: <code>fastbfm report {html.escape(str(run_dir))} --videos</code> "
                     "renders zero-shot against adapted for each task and method.</p>")
    parts += [
        "<h2>Per seed</h2>",
        _table("seeds", ["task", "method", "seed", "zero-shot", "final", "lowest", "best"],
               ["task", "method", "seed", "zero_shot", "final", "lowest", "best"], seed_rows(results)),
        "<h2>Settings</h2>",
    ]
    for r in results:
        config = {k: r[k] for k in ("config", "compute_s_per_episode") if k in r}
        parts.append(f"<details><summary>{html.escape(r['task'])} &middot; {html.escape(_method(r))}</summary>"
                     f"<pre>{html.escape(json.dumps(config, indent=2))}</pre></details>")
    parts.append(f'<p class="meta">Tidy curves: <code>{html.escape(str(run_dir / "curves.csv"))}</code>; '
                 f"all numbers: <code>{html.escape(str(run_dir / RESULTS))}</code>.</p>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def write_report(run_dir: str | Path, out: str | Path | None = None, video_notes: dict[str, str] | None = None) -> Path:
    """Write ``run_dir/report.html`` (or ``out``) and return its path."""
    source = results_path(run_dir)
    out = Path(out) if out is not None else source.parent / "report.html"
    text = build_report(source, video_notes)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text(out, text)  # a temporary file of its own, renamed into place
    return out
