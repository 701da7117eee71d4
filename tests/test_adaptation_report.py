"""The adaptation report of grids: improvement at budgets, dips, headroom share and compute, on rows whose
answers are known."""

import csv

import pytest

from fastbfm.errors import FastBFMError
from fastbfm.evaluate.grid import TIDY_COLUMNS
from fastbfm.report.adaptation import Thresholds, load_rows, summarize, write_report


def _rows(model, task, method, seed, budget, curve, compute=1.0, sim=0.25):
    return [{"model": model, "task": task, "method": method, "seed": seed, "budget_episodes": budget, "episodes": e,
             "return": r, "compute_s_per_episode": compute, "sim_s_per_episode": sim} for e, r in curve]


def _grid(tmp_path, name, rows):
    folder = tmp_path / name
    folder.mkdir()
    with (folder / "results.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, TIDY_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return folder


@pytest.fixture
def grids(tmp_path):
    a, b = "maze:reach_a", "maze:reach_b"
    rows = []
    for seed in (0, 1):
        # task a: zero-shot 100, oracle 300; LoLA dips to 80 at 5 episodes, then 150 @10, 200 @20, 250 @50
        rows += _rows("m", a, "lola", seed, 50, [(0, 100), (5, 80), (10, 150), (20, 200), (50, 250)])
        rows += _rows("m", a, "oracle", seed, 50, [(0, 300)], compute=0, sim=0)
        # task b: zero-shot 200 + 20 * seed (mean 210), oracle 210 (no headroom); LoLA stays flat
        rows += _rows("m", b, "lola", seed, 50, [(0, 200 + 20 * seed), (10, 200 + 20 * seed), (50, 200 + 20 * seed)])
        rows += _rows("m", b, "oracle", seed, 50, [(0, 210)], compute=0, sim=0)
    # CMA-ES: generations of 8 (last point at 48), and a ReLA grid with a smaller budget
    rows += _rows("m", a, "cmaes", 0, 50, [(0, 100), (8, 120), (16, 140), (48, 180)], compute=0.5, sim=0.4)
    small = _rows("m", a, "rela", 0, 20, [(0, 100), (10, 130), (20, 160)], compute=10.0, sim=0.5)
    return [_grid(tmp_path, "big", rows), _grid(tmp_path, "small", small)]


def test_summary_numbers_match_their_definitions(grids):
    result = summarize(load_rows(grids), Thresholds(min_zero_shot=10, min_headroom=10))
    by = {r["method"]: r for r in result["summary"]}
    lola = by["lola"]
    assert lola["tasks"] == 2 and lola["tasks_relative"] == 2 and lola["tasks_headroom"] == 1
    assert lola["improvement_10"] == pytest.approx((0.5 + 0.0) / 2)
    assert lola["improvement_20"] == pytest.approx((1.0 + 0.0) / 2)  # task b: the last point <= 20 is at 10
    assert lola["improvement_50"] == pytest.approx((1.5 + 0.0) / 2)
    assert lola["improved_tasks_20"] == 1
    assert lola["headroom_20"] == pytest.approx(0.5) and lola["headroom_50"] == pytest.approx(0.75)
    assert lola["worst_dip"] == pytest.approx(-0.2) and lola["dipped_tasks"] == 1
    assert lola["compute_s"] == pytest.approx(1.0) and lola["compute_no_sim_s"] == pytest.approx(0.75)
    # CMA-ES's budget-50 value is its last generation (48 episodes)
    assert by["cmaes"]["improvement_50"] == pytest.approx(0.8) and by["cmaes"]["improvement_20"] == pytest.approx(0.4)
    # a grid of budget 20 has no value at 50, and its zero-shot comes from its own first point
    assert by["rela"]["improvement_20"] == pytest.approx(0.6) and by["rela"]["improvement_50"] is None
    assert by["rela"]["headroom_20"] == pytest.approx(0.3)
    # in hindsight, task a's best method is LoLA at every budget (ReLA's grid stops at 20)
    best = result["hindsight"]
    assert best["methods"] == ["lola", "rela", "cmaes"] and best["tasks"] == 1
    assert (best["headroom_10"], best["headroom_20"], best["headroom_50"]) == pytest.approx((0.25, 0.5, 0.75))


def test_hindsight_best_takes_the_best_method_of_each_task(tmp_path):
    rows = []
    for task, lola, cmaes in (("maze:a", 200, 120), ("maze:b", 110, 190)):  # zero-shot 100, oracle 300 on both
        rows += _rows("m", task, "lola", 0, 20, [(0, 100), (20, lola)])
        rows += _rows("m", task, "cmaes", 0, 20, [(0, 100), (20, cmaes)])
        rows += _rows("m", task, "oracle", 0, 20, [(0, 300)], compute=0, sim=0)
    result = summarize(load_rows([_grid(tmp_path, "g", rows)]))
    by = {r["method"]: r["headroom_20"] for r in result["summary"]}
    assert by == pytest.approx({"lola": (0.5 + 0.05) / 2, "cmaes": (0.1 + 0.45) / 2})
    assert result["hindsight"]["headroom_20"] == pytest.approx((0.5 + 0.45) / 2)


def test_thresholds_leave_out_near_zero_tasks(grids):
    result = summarize(load_rows(grids), Thresholds(min_zero_shot=150, min_headroom=500))
    lola = next(r for r in result["summary"] if r["method"] == "lola")
    assert lola["tasks_relative"] == 1 and lola["improvement_50"] == pytest.approx(0.0)
    assert lola["headroom_20"] is None and lola["worst_dip"] == pytest.approx(0.0)


def test_report_writes_markdown_and_png_and_names_missing_grids(grids, tmp_path):
    out = tmp_path / "docs" / "report.md"
    write_report(grids, out, "fastbfm summarize big small")
    text = out.read_text()
    assert "fastbfm summarize big small" in text and "| LoLA | 2 | +25.0% / +50.0% / +75.0% |" in text
    assert (tmp_path / "docs" / "report.png").stat().st_size > 1000 and "](report.png)" in text
    with pytest.raises(FastBFMError, match="no results.csv"):
        load_rows([tmp_path / "nowhere"])
    old = tmp_path / "old"
    old.mkdir()
    (old / "results.csv").write_text("model,task,method,seed,episodes,return\nm,t,lola,0,0,1\n")
    with pytest.raises(FastBFMError, match="predates the budget column"):
        load_rows([old])


@pytest.mark.parametrize("pattern, report", [("grid-*", "adaptation_zoo"), ("strong-*", "adaptation_strong")])
def test_committed_report_is_what_summarize_makes_of_the_committed_grids(tmp_path, pattern, report):
    """The committed reports must be regenerable from results/: the same tables, figure for figure."""
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    grids = sorted(p.parent for p in (repo / "results").glob(f"{pattern}/results.csv"))
    assert grids, "no committed grid tables"
    write_report(grids, tmp_path / "r.md", "cmd")
    body = lambda text: text.split("## Summary per method", 1)[1].replace("(r.png)", f"({report}.png)")  # noqa: E731
    assert body((tmp_path / "r.md").read_text()) == body((repo / "docs" / f"{report}.md").read_text())


def test_paired_dips_count_only_points_whose_whole_interval_is_below_zero_shot(tmp_path):
    """Two tasks whose curves both have a lowest point 10% below zero-shot (the old statistic counts both): on
    task a the point is lower on every start state, on task b it is noise around zero-shot."""
    import numpy as np

    from fastbfm.evaluate.grid import EPISODE_COLUMNS
    from fastbfm.report.adaptation import load_episodes

    rng = np.random.default_rng(0)
    rows, episodes = [], []
    for task, shift, spread in (("maze:a", -10.0, 2.0), ("maze:b", -10.0, 150.0)):
        for seed in (0, 1):
            zero = rng.normal(100, 20, 20)
            low = zero + shift + rng.normal(0, spread, 20)
            low += shift - (low - zero).mean()  # the seed's mean difference is exactly the shift
            final = zero + 5
            for e, returns in ((0.0, zero), (10.0, low), (20.0, final)):
                rows += _rows("m", task, "lola", seed, 20, [(e, float(returns.mean()))])
                episodes += [{"model": "m", "task": task, "method": "lola", "seed": seed, "episodes": e, "start": j, "return": r}
                             for j, r in enumerate(returns)]
    folder = _grid(tmp_path, "g", rows)
    with (folder / "episodes.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, EPISODE_COLUMNS)
        writer.writeheader()
        writer.writerows(episodes)
    result = summarize(load_rows([folder]), episodes=load_episodes([folder]))
    by_task = {t["task"]: t for t in result["per_task"]}
    assert by_task["maze:a"]["paired"]["dips"] and not by_task["maze:b"]["paired"]["dips"]
    assert by_task["maze:b"]["paired"]["worst"][0] == pytest.approx(-10.0)
    lola = result["summary"][0]
    assert lola["dipped_tasks"] == 2 and lola["paired_dips"] == 1 and lola["paired_improved_20"] == 2
    write_report([folder], tmp_path / "r.md", "cmd")
    assert "| LoLA | 2 |" in (tmp_path / "r.md").read_text() and "| 1/2 |" in (tmp_path / "r.md").read_text()


def test_models_given_by_path_are_named_by_their_folder(tmp_path):
    rows = _rows("../shared/models/strong-fb", "maze:reach_a", "lola", 0, 20, [(0, 100), (20, 150)])
    assert {r["model"] for r in load_rows([_grid(tmp_path, "g", rows)])} == {"strong-fb"}
    write_report([tmp_path / "g"], tmp_path / "r.md", "cmd")
    assert "| strong-fb |" in (tmp_path / "r.md").read_text() and "../shared" not in (tmp_path / "r.md").read_text()
