"""The adaptation report of a set of grids: per method, improvement over zero-shot at fixed budgets, the
worst dip, the share of the oracle's headroom captured, and the compute per episode.

    fastbfm summarize GRID_DIR [GRID_DIR ...] --out docs/adaptation_zoo.md

reads each grid's tidy ``results.csv`` (``fastbfm grid``) and writes the markdown report and a PNG of
the curves beside it. Definitions (also printed in the report):

- zero-shot ZS of a (model, task, seed): the ``oracle`` cell's zero-shot return, else the first point of
  a curve that starts from the zero-shot latent; all on that seed's fixed evaluation episodes;
- value of a method at budget b: its curve at the last evaluation with at most b episodes spent;
- per (model, task), seeds are averaged first. The relative change (V - ZS) / ZS is averaged over the
  tasks with ZS >= ``min_zero_shot`` (a relative change of a near-zero return means nothing); headroom
  captured (V - ZS) / (O - ZS), O the oracle, over the tasks where O - ZS >= ``min_headroom``;
- worst dip: the lowest point of the seed-mean curve below ZS, relative to ZS, over the same tasks (the
  old statistic: the minimum of noisy points sits below the true curve even when nothing changes);
- paired dip (where the grid wrote ``episodes.csv``): each point against zero-shot on the same start
  states, the mean difference with its 95% bootstrap interval over start states
  (``fastbfm.evaluate.paired``); a task dips only where a whole interval lies below zero;
- compute per adaptation episode: wall-clock of the method (evaluation excluded), with and without the
  simulation it ran.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fastbfm.adapt.methods import METHODS, ORACLE, ZERO_SHOT, label
from fastbfm.errors import FastBFMError
from fastbfm.io import read_csv, write_text
from fastbfm.schemas import EpisodeTableRow, GridTableRow, validate

BUDGETS = (10, 20, 50)


def method_order(found: set[str]) -> list[str]:
    """The methods of the grids in the registry's order; a method the registry does not hold (a grid of
    another version, a method registered elsewhere) follows, by name, rather than being dropped."""
    found = found - {ZERO_SHOT, ORACLE}
    return [m for m in METHODS if m in found] + sorted(found - set(METHODS))


def starts_at_zero_shot(method: str) -> bool:
    return method in METHODS and METHODS[method].starts_at_zero_shot


@dataclass(frozen=True)
class Thresholds:
    min_zero_shot: float = 10.0
    """Tasks whose zero-shot return is lower are left out of relative changes and dips."""
    min_headroom: float = 10.0
    """Tasks where the oracle beats zero-shot by less are left out of the headroom share."""


def model_label(model: str) -> str:
    """A model's name in tables: a checkpoint folder given by path (``../shared/models/x``) is named by its
    folder (``x``), as a zoo model is by its name."""
    return Path(model).name if "/" in model or "\\" in model else model


def _grid_rows(rows: list[dict], path: Path) -> list[dict]:
    if rows and "budget_episodes" not in rows[0]:
        raise FastBFMError(f"{path} predates the budget column: rerun its `fastbfm grid` command to rewrite the tables")
    for line, row in enumerate(rows, start=2):
        validate(f"{path} (line {line})", row, GridTableRow, "corrupt grid table")
    return [{**row, "model": model_label(row["model"]), "seed": int(row["seed"]), "episodes": float(row["episodes"]), "return": float(row["return"]),
             "compute_s_per_episode": float(row["compute_s_per_episode"] or 0),
             "sim_s_per_episode": float(row.get("sim_s_per_episode") or 0),
             "budget_episodes": float(row["budget_episodes"])} for row in rows]


def _episode_rows(rows: list[dict], path: Path) -> list[dict]:
    for line, row in enumerate(rows, start=2):
        validate(f"{path} (line {line})", row, EpisodeTableRow, "corrupt grid episodes")
    return [{**row, "model": model_label(row["model"]), "seed": int(row["seed"]), "episodes": float(row["episodes"]), "start": int(row["start"]),
             "return": float(row["return"])} for row in rows]


def load_episodes(grids: list[Path]) -> dict[tuple, dict[float, np.ndarray]]:
    """(model, task, method, seed) -> {episodes spent: the returns of the seed's evaluation episodes, in
    start-state order}, from the grids that wrote ``episodes.csv``."""
    found: dict[tuple, dict[float, dict[int, float]]] = {}
    for grid in grids:
        path = Path(grid) / "episodes.csv"
        if not path.is_file():
            continue
        for row in read_csv(path, _episode_rows, what="grid episodes"):
            key = (row["model"], row["task"], row["method"], row["seed"])
            found.setdefault(key, {}).setdefault(row["episodes"], {})[row["start"]] = row["return"]
    return {k: {e: np.array([v[j] for j in sorted(v)]) for e, v in points.items()} for k, points in found.items()}


def load_rows(grids: list[Path]) -> list[dict]:
    rows = []
    for grid in grids:
        path = Path(grid) / "results.csv"
        if not path.is_file():
            raise FastBFMError(f"{grid} has no results.csv: run (or finish) `fastbfm grid --out {grid}` first")
        rows += read_csv(path, _grid_rows, what="grid results")
    if not rows:
        raise FastBFMError("the grids hold no results")
    return rows


def _curves(rows: list[dict]) -> dict[tuple, dict]:
    """(model, task, method, seed) -> {"episodes", "returns", "compute", "sim"}."""
    curves: dict[tuple, dict] = {}
    for r in sorted(rows, key=lambda r: r["episodes"]):
        c = curves.setdefault((r["model"], r["task"], r["method"], r["seed"]), {"episodes": [], "returns": []})
        c["episodes"].append(r["episodes"])
        c["returns"].append(r["return"])
        c["compute"], c["sim"], c["budget"] = r["compute_s_per_episode"], r["sim_s_per_episode"], r["budget_episodes"]
    return curves


def _at(curve: dict, budget: float) -> float | None:
    """The curve's value after at most ``budget`` episodes; None beyond the budget its grid ran."""
    if curve["budget"] < budget - 1e-9:
        return None
    kept = [r for e, r in zip(curve["episodes"], curve["returns"]) if e <= budget + 1e-9]
    return kept[-1]


def _paired(episodes: dict, reference: dict, model: str, task: str, method: str, seeds: list[int], grid: list[float]) -> dict | None:
    """The paired statistic of a (model, task, method) against zero-shot on the same start states: per point
    the mean difference and its 95% interval; None without per-episode returns for every seed."""
    from fastbfm.evaluate.paired import paired_interval

    runs = [episodes.get((model, task, method, s)) for s in seeds]
    refs = [reference.get((model, task, s)) for s in seeds]
    if any(r is None for r in runs) or any(r is None for r in refs):
        return None
    points = [e for e in grid if all(e in run for run in runs)]
    sizes = {len(r) for r in refs} | {len(run[e]) for run in runs for e in points}
    if not points or len(sizes) != 1:
        return None
    returns = np.stack([np.stack([run[e] for e in points]) for run in runs])
    mean, low, high = paired_interval(returns, np.stack(refs))
    paired = {"episodes": points, "difference": mean.tolist(), "low": low.tolist(), "high": high.tolist(), "starts": sizes.pop()}
    later = range(1, len(points)) if len(points) > 1 else range(1)  # point 0 is zero-shot itself
    worst = min(later, key=lambda i: paired["difference"][i])
    paired["worst"] = (paired["difference"][worst], paired["low"][worst], paired["high"][worst])
    paired["dips"] = any(paired["high"][i] < 0 for i in later)
    paired["at"] = {b: _paired_at(paired, b) for b in BUDGETS}
    return paired


def _paired_at(paired: dict, budget: float) -> tuple[float, float, float] | None:
    kept = [i for i, e in enumerate(paired["episodes"]) if e <= budget + 1e-9]
    if not kept or paired["episodes"][-1] < budget - 1e-9:
        return None
    i = kept[-1]
    return paired["difference"][i], paired["low"][i], paired["high"][i]


def summarize(rows: list[dict], thresholds: Thresholds = Thresholds(), episodes: dict | None = None) -> dict:
    episodes = episodes or {}
    curves = _curves(rows)
    zero_shot: dict[tuple, float] = {}
    oracle: dict[tuple, float] = {}
    for (model, task, method, seed), c in curves.items():
        if method == ORACLE:
            oracle[(model, task, seed)] = c["returns"][0]
    # one reference per (model, task, seed), from the first method in this order that has it: all of them
    # evaluate z_r itself on the seed's episodes, so they agree but for floating-point rounding
    for preferred in (ZERO_SHOT, *(m for m in METHODS if starts_at_zero_shot(m))):
        for (model, task, method, seed), c in curves.items():
            if method == preferred:
                zero_shot.setdefault((model, task, seed), c["returns"][0])

    reference: dict[tuple, np.ndarray] = {}  # zero-shot's per-episode returns, in the same order of preference
    for preferred in (ZERO_SHOT, *(m for m in METHODS if starts_at_zero_shot(m))):
        for (model, task, method, seed), points in episodes.items():
            if method == preferred and 0.0 in points:
                reference.setdefault((model, task, seed), points[0.0])

    methods = method_order({k[2] for k in curves})
    pairs = sorted({(k[0], k[1]) for k in curves if k[2] in methods})
    per_task = []
    for model, task in pairs:
        for method in methods:
            seeds = sorted(k[3] for k in curves if k[:3] == (model, task, method) and (model, task, k[3]) in zero_shot)
            if not seeds:
                continue
            zs = float(np.mean([zero_shot[(model, task, s)] for s in seeds]))
            has_oracle = all((model, task, s) in oracle for s in seeds)
            best = float(np.mean([oracle[(model, task, s)] for s in seeds])) if has_oracle else None
            values = {}
            for b in BUDGETS:
                vs = [_at(curves[(model, task, method, s)], b) for s in seeds]
                values[b] = None if any(v is None for v in vs) else float(np.mean(vs))
            grid = sorted({e for s in seeds for e in curves[(model, task, method, s)]["episodes"]})
            mean_curve = [float(np.mean([_at(curves[(model, task, method, s)], e) for s in seeds])) for e in grid]
            per_task.append({
                "paired": _paired(episodes, reference, model, task, method, seeds, grid),
                "model": model, "task": task, "method": method, "seeds": len(seeds), "zero_shot": zs, "oracle": best,
                "values": values, "episodes": grid, "mean_curve": mean_curve, "lowest": min(mean_curve),
                "compute_s": float(np.mean([curves[(model, task, method, s)]["compute"] for s in seeds])),
                "sim_s": float(np.mean([curves[(model, task, method, s)]["sim"] for s in seeds])),
            })

    summary = [_method_row(method, [t for t in per_task if t["method"] == method], thresholds) for method in methods]
    models = sorted({t["model"] for t in per_task})
    by_model = {m: [_method_row(method, cells, thresholds) for method in methods
                    if (cells := [t for t in per_task if t["method"] == method and t["model"] == m])] for m in models}
    return {"per_task": per_task, "summary": summary, "by_model": by_model, "thresholds": thresholds,
            "hindsight": _hindsight_best(per_task, methods, thresholds)}


def _hindsight_best(per_task: list[dict], methods: list[str], thresholds: Thresholds) -> dict | None:
    """Headroom share of the best method per task, chosen after seeing the results: what a perfect choice
    among the methods run on every task with headroom would capture (a yardstick, not a method)."""
    room = {(t["model"], t["task"]) for t in per_task
            if t["oracle"] is not None and t["oracle"] - t["zero_shot"] >= thresholds.min_headroom}
    everywhere = [m for m in methods if starts_at_zero_shot(m)
                  and room <= {(t["model"], t["task"]) for t in per_task if t["method"] == m}]
    if len(everywhere) < 2:
        return None
    result = {"methods": everywhere, "tasks": len(room)}
    for b in BUDGETS:
        best = []
        for key in room:
            shares = [(t["values"][b] - t["zero_shot"]) / (t["oracle"] - t["zero_shot"]) for t in per_task
                      if (t["model"], t["task"]) == key and t["method"] in everywhere and t["values"][b] is not None]
            if shares:  # the methods whose grids ran this budget
                best.append(max(shares))
        result[f"headroom_{b}"] = float(np.mean(best)) if best else None
    return result


def _method_row(method: str, cells: list[dict], thresholds: Thresholds) -> dict:
    """One method's aggregate over its (model, task) cells."""
    relevant = [t for t in cells if t["zero_shot"] >= thresholds.min_zero_shot]
    with_room = [t for t in cells if t["oracle"] is not None and t["oracle"] - t["zero_shot"] >= thresholds.min_headroom]
    row = {"method": method, "tasks": len(cells), "tasks_relative": len(relevant), "tasks_headroom": len(with_room)}
    for b in BUDGETS:
        rel = [(t["values"][b] - t["zero_shot"]) / t["zero_shot"] for t in relevant if t["values"][b] is not None]
        room = [(t["values"][b] - t["zero_shot"]) / (t["oracle"] - t["zero_shot"]) for t in with_room if t["values"][b] is not None]
        row[f"improvement_{b}"] = float(np.mean(rel)) if rel else None
        row[f"improved_tasks_{b}"] = sum(r > 0 for r in rel) if rel else None
        row[f"headroom_{b}"] = float(np.mean(room)) if room else None
    dips = [min(0.0, (t["lowest"] - t["zero_shot"]) / t["zero_shot"]) for t in relevant]
    row["worst_dip"] = float(min(dips)) if dips else None
    row["dipped_tasks"] = sum(d < -0.05 for d in dips)
    paired = [t for t in relevant if t.get("paired") is not None]
    row["tasks_paired"] = len(paired)
    row["paired_dips"] = sum(t["paired"]["dips"] for t in paired) if paired else None
    row["worst_paired"] = (min(((t["paired"]["worst"][0] / t["zero_shot"], t["paired"]["worst"][1] / t["zero_shot"],
                                  t["paired"]["worst"][2] / t["zero_shot"]) for t in paired), key=lambda w: w[0]) if paired else None)
    at20 = [t["paired"]["at"][20] for t in paired if t["paired"]["at"][20] is not None]
    row["paired_improved_20"] = sum(a[1] > 0 for a in at20) if at20 else None
    row["tasks_paired_20"] = len(at20)
    row["compute_s"] = float(np.mean([t["compute_s"] for t in cells]))
    row["compute_no_sim_s"] = float(np.mean([t["compute_s"] - t["sim_s"] for t in cells]))
    return row


def pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:+.1f}%"


def _count(n: int | None, of: int) -> str:
    return "—" if n is None else f"{n}/{of}"


def _interval(w: tuple[float, float, float] | None) -> str:
    return "—" if w is None else f"{pct(w[0])} [{pct(w[1])}, {pct(w[2])}]"


def _absolute(w: tuple[float, float, float] | None) -> str:
    return "—" if w is None else f"{w[0]:+.1f} [{w[1]:+.1f}, {w[2]:+.1f}]"


def _seconds(x: float) -> str:
    return f"{x:.3g}"


def markdown(result: dict, command: str, figure: str | None, title: str = "Fast adaptation on the shipped zoo") -> str:
    t: Thresholds = result["thresholds"]
    lines = [
        f"# {title}",
        "",
        f"Generated by `{command}` from the grids' `results.csv`; every number below is measured there.",
        "",
        "## Summary per method",
        "",
        "| method | tasks | change vs zero-shot @10 / @20 / @50 | tasks improved @20 | headroom captured @10 / @20 / @50 "
        "| worst dip | tasks dipping >5% | paired dips (95% CI below 0) | worst paired point [95% CI] | improved @20 (CI above 0) "
        "| s / episode | s / episode without simulation |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["summary"]:
        improved = "—" if r["improved_tasks_20"] is None else f"{r['improved_tasks_20']}/{r['tasks_relative']}"
        lines.append(
            f"| {label(r['method'])} | {r['tasks']} "
            f"| {' / '.join(pct(r[f'improvement_{b}']) for b in BUDGETS)} | {improved} "
            f"| {' / '.join(pct(r[f'headroom_{b}']) for b in BUDGETS)} ({r['tasks_headroom']} tasks) "
            f"| {pct(r['worst_dip'])} | {r['dipped_tasks']}/{r['tasks_relative']} "
            f"| {_count(r['paired_dips'], r['tasks_paired'])} | {_interval(r['worst_paired'])} "
            f"| {_count(r['paired_improved_20'], r['tasks_paired_20'])} "
            f"| {_seconds(r['compute_s'])} | {_seconds(r['compute_no_sim_s'])} |"
        )
    if (best := result.get("hindsight")) is not None:
        names = ", ".join(label(m) for m in best["methods"])
        lines += ["", f"In hindsight, the best of {names} on each task (chosen after seeing the results, so not a method) "
                  f"captures {' / '.join(pct(best[f'headroom_{b}']) for b in BUDGETS)} of the headroom @10 / @20 / @50 "
                  f"({best['tasks']} tasks): the most a choice among these methods could reach."]
    lines += [
        "",
        "Definitions:",
        "",
        "- zero-shot: the return of the zero-shot latent z_r on each seed's fixed evaluation episodes;"
        " every point of every curve is evaluated on the same episodes (paired comparisons);",
        "- value at a budget: the curve at the last evaluation with at most that many adaptation episodes spent;"
        " seeds are averaged per task, then tasks are averaged;",
        f"- change vs zero-shot: (value - zero-shot) / zero-shot, over the tasks with zero-shot >= {t.min_zero_shot:g};",
        f"- headroom captured: (value - zero-shot) / (oracle - zero-shot), over the tasks where the oracle (best of 256"
        f" latents, `fastbfm headroom`) beats zero-shot by >= {t.min_headroom:g};",
        "- worst dip: the lowest point of a task's seed-mean curve relative to zero-shot, worst task (the old statistic:"
        " the minimum of noisy points lies below the true curve even when nothing changes);",
        "- paired dips: each point of a curve minus zero-shot on the same start states (evaluation is deterministic given"
        " them), averaged over episodes and seeds, with a 95% bootstrap interval over start states (each seed's episodes"
        " resampled); a task dips when some point's whole interval is below zero; worst paired point: the point with the"
        " lowest mean difference and its interval, relative to zero-shot, worst task; improved @20: the interval after 20"
        " episodes above zero. `—`: the grid wrote no per-episode returns (`episodes.csv`);",
        "- OpTI rows run label-free: they start from a prior draw, not from z_r, and are measured against z_r's"
        " zero-shot all the same (what they must beat without labels);",
        "- the oracle is the best of 256 latents, so a method can beat it (a share above 100%): a yardstick, not a bound;",
        "- s / episode: wall-clock of the method per adaptation episode on one CPU thread, evaluation excluded,"
        " with and without the simulation it ran. `—`: the grid ran a smaller budget.",
    ]
    if figure:
        lines += ["", f"![headroom captured against the budget]({figure})"]
    lines += ["", "## Per model: change vs zero-shot / headroom captured, after 20 episodes", "",
              "| method | " + " | ".join(result["by_model"]) + " |", "|---|" + "---|" * len(result["by_model"])]
    for method in (r["method"] for r in result["summary"]):
        cells = []
        for rows in result["by_model"].values():
            row = next((r for r in rows if r["method"] == method), None)
            cells.append("" if row is None else f"{pct(row['improvement_20'])} / {pct(row['headroom_20'])}")
        lines.append(f"| {label(method)} | " + " | ".join(cells) + " |")
    lines += ["", "## Per task", "", "| model | task | zero-shot | oracle | method | seeds | @10 | @20 | @50 | lowest "
              "| worst paired point [95% CI] | @20 - zero-shot [95% CI] |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    fmt = lambda v: "—" if v is None else f"{v:.1f}"  # noqa: E731
    for r in result["per_task"]:
        lines.append(
            f"| {r['model']} | {r['task'].split(':')[-1]} | {r['zero_shot']:.1f} | {fmt(r['oracle'])} "
            f"| {label(r['method'])} | {r['seeds']} "
            f"| {' | '.join(fmt(r['values'][b]) for b in BUDGETS)} | {r['lowest']:.1f} "
            f"| {_absolute(r['paired']['worst'] if r.get('paired') else None)} "
            f"| {_absolute(r['paired']['at'][20] if r.get('paired') else None)} |"
        )
    return "\n".join(lines) + "\n"


def plot_headroom(result: dict, path: Path) -> Path:
    """Mean share of the oracle's headroom captured against the budget, one line per method."""
    from fastbfm.report.plots import plt, save_figure  # plots selects the headless backend first

    t: Thresholds = result["thresholds"]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for i, method in enumerate(r["method"] for r in result["summary"]):
        cells = [c for c in result["per_task"] if c["method"] == method and c["oracle"] is not None
                 and c["oracle"] - c["zero_shot"] >= t.min_headroom]
        if not cells:
            continue
        full_budget = all(c["values"][max(BUDGETS)] is not None for c in cells)
        xs = sorted({e for c in cells for e in c["episodes"]})
        shares = []
        for x in xs:
            vals = [(np.interp(x, c["episodes"], c["mean_curve"]) - c["zero_shot"]) / (c["oracle"] - c["zero_shot"])
                    for c in cells if c["episodes"][-1] >= x]
            shares.append(np.mean(vals))
        ax.plot(xs, shares, marker="o", markersize=3, label=f"{label(method)} ({len(cells)} tasks)",
                color=f"C{i}", linestyle="-" if full_budget else "--")
    ax.axhline(0, color="gray", linewidth=0.8)
    ax.axhline(1, color="gray", linewidth=0.8, linestyle=":")
    ax.set_xlabel("adaptation episodes")
    ax.set_ylabel("share of the oracle's headroom captured")
    ax.legend(fontsize=8, loc="best")
    return save_figure(fig, path)


def write_report(grids: list[Path], out: Path, command: str, thresholds: Thresholds = Thresholds(),
                 title: str = "Fast adaptation on the shipped zoo") -> dict:
    """Markdown at ``out`` and ``<out stem>.png`` beside it."""
    result = summarize(load_rows(grids), thresholds, load_episodes(grids))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure = plot_headroom(result, out.with_suffix(".png"))
    text = markdown(result, command, figure.name, title)
    write_text(out, text)
    return result
