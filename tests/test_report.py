"""Run folders, videos and the HTML report: tiny maze runs with the shipped model, frames at small sizes."""

import base64
import csv
import json
import sys
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image

from fastbfm.cli import main
from fastbfm.errors import FastBFMError
from fastbfm.report.html import find_videos, write_report
from fastbfm.report.run import adapted_latent, curve_rows, load_run, video_name, write_run
from fastbfm.report.video import render_latents, write_video

TASK = "point_mass_maze:reach_top_left"


class ReportParser(HTMLParser):
    """Tables as lists of rows (cells as their text and data-value), and every src attribute."""

    def __init__(self):
        super().__init__()
        self.tables, self.sources, self._row, self._cell = {}, [], None, None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self._table = self.tables.setdefault(attrs.get("id"), [])
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = {"text": "", "value": attrs.get("data-value")}
        if "src" in attrs:
            self.sources.append(attrs["src"])

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self._row.append(self._cell)
            self._cell = None
        elif tag == "tr":
            self._table.append(self._row)

    def handle_data(self, data):
        if self._cell is not None:
            self._cell["text"] += data


def parse(path):
    parser = ReportParser()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def _result(task, method, curves, with_latents=True):
    curves = np.asarray(curves, dtype=float)
    zs, final = curves[:, 0].mean(), curves[:, -1].mean()
    result = {
        "task": task, "method": method, "start": "zero-shot", "seeds": list(range(len(curves))),
        "zero_shot": zs, "final": final, "final_std": curves[:, -1].std(),
        "change_pct": 100 * (final - zs) / zs, "lowest": curves.mean(0).min(),
        "lowest_vs_zero_shot_pct": 100 * (curves.mean(0).min() - zs) / zs,
        "episodes": [float(i) for i in range(curves.shape[1])], "curves": curves.tolist(),
        "config": {"episodes": curves.shape[1] - 1},
    }
    if with_latents:
        result["z_zero_shot"] = [0.0] * 50
        result["z"] = [[0.1] * 50 for _ in curves]
    return result


@pytest.fixture
def grid_payload():
    """Two tasks x two methods, shaped like `fastbfm adapt --out` (with latents) or the demo's older output."""
    return {
        "model": "maze-fb",
        "results": [
            _result(TASK, "lola", [[100.0, 120.0, 150.5], [90.0, 80.0, 170.25]]),
            _result(TASK, "cmaes", [[100.0, 101.0, 99.0], [90.0, 95.0, 97.0]]),
            _result("point_mass_maze:reach_top_right", "lola", [[20.0, 30.0, 65.0], [22.0, 21.0, 60.0]], with_latents=False),
        ],
        "wall_time_s": 12.5,
    }


def test_write_run_writes_results_and_tidy_curves(tmp_path, grid_payload):
    files = write_run(tmp_path / "run", grid_payload)
    assert load_run(tmp_path / "run") == json.loads(json.dumps(grid_payload))
    rows = list(csv.DictReader(files["curves"].open()))
    assert list(rows[0]) == ["task", "method", "seed", "episodes", "return"]
    assert len(rows) == 3 * 2 * 3 == len(curve_rows(grid_payload["results"]))
    assert rows[5] == {"task": TASK, "method": "lola", "seed": "1", "episodes": "2.0", "return": "170.25"}


def test_report_tables_hold_the_results_and_every_image_is_embedded(tmp_path, grid_payload):
    run = tmp_path / "run"
    write_run(run, grid_payload)
    (run / "videos").mkdir()
    frames = [np.full((20, 30, 3), 40 * i, dtype=np.uint8) for i in range(3)]
    video = run / "videos" / video_name(grid_payload["results"][0])
    write_video(frames, video, fps=5)
    page = parse(write_report(run))

    summary = page.tables["summary"]
    header = [c["text"] for c in summary[0]]
    assert header[:2] == ["task", "method"] and "zero-shot" in header and "final" in header and "change %" in header
    assert len(summary) == 1 + 3
    for row, result in zip(summary[1:], grid_payload["results"]):
        cells = dict(zip(header, row))
        assert cells["task"]["text"] == result["task"] and cells["method"]["text"] == result["method"]
        for column, key in [("zero-shot", "zero_shot"), ("final", "final"), ("change %", "change_pct"), ("lowest", "lowest"),
                            ("lowest vs zero-shot %", "lowest_vs_zero_shot_pct")]:
            assert float(cells[column]["value"]) == pytest.approx(result[key], abs=1e-12)
            assert float(cells[column]["text"]) == pytest.approx(result[key], abs=0.051)
    assert len(page.tables["seeds"]) == 1 + 6

    assert page.sources and all(src.startswith("data:") for src in page.sources)  # nothing outside the file
    png = [s for s in page.sources if s.startswith("data:image/png;base64,")]
    gif = [s for s in page.sources if s.startswith("data:image/gif;base64,")]
    assert len(png) == 1 and base64.b64decode(png[0].split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(gif) == 1 and base64.b64decode(gif[0].split(",", 1)[1]) == video.read_bytes()


def test_a_regenerated_report_embeds_no_video_of_a_result_the_folder_no_longer_holds(tmp_path, grid_payload):
    """Before: videos of methods dropped from results.json were still embedded."""
    run = tmp_path / "run"
    write_run(run, grid_payload)
    frames = [np.full((20, 30, 3), 40 * i, dtype=np.uint8) for i in range(3)]
    for result in grid_payload["results"][:2]:  # lola and cmaes on TASK
        write_video(frames, run / "videos" / video_name(result), fps=5)
        write_video(frames, run / "videos" / video_name(result, "-evolution.gif"), fps=5)
    write_video(frames, run / "mine.gif", fps=5)  # placed by the user beside results.json: kept
    write_run(run, {**grid_payload, "results": [r for r in grid_payload["results"] if r["method"] != "cmaes"]})
    page = parse(write_report(run))
    gifs = [s for s in page.sources if s.startswith("data:image/gif;base64,")]
    assert len(gifs) == 3  # lola's two and the user's, not cmaes's
    assert all("cmaes" not in p.name for p in find_videos(run, load_run(run)["results"]))


def test_report_of_demo_shaped_results_without_latents_or_videos(tmp_path, grid_payload):
    payload = {"model": "maze-fb", "results": [grid_payload["results"][2]], "plot": "demo_out/adaptation_curves.png"}
    (tmp_path / "results.json").write_text(json.dumps(payload))
    page = parse(write_report(tmp_path / "results.json", tmp_path / "elsewhere" / "page.html"))
    assert float(page.tables["summary"][1][6]["value"]) == pytest.approx(payload["results"][0]["final"])
    assert not any(s.startswith("data:image/gif") for s in page.sources)


def test_rendered_returns_are_evaluation_returns_and_panels_sit_side_by_side(tmp_path):
    from fastbfm.adapt.zero_shot import infer_goal
    from fastbfm.bfm.checkpoint import load_model
    from fastbfm.envs import get_task
    from fastbfm.envs.point_mass_maze import TARGETS
    from fastbfm.rollout import evaluate_latent
    from fastbfm.zoo import resolve_model

    model, task = load_model(resolve_model("maze-fb")), get_task(TASK)
    z_goal = infer_goal(model, np.array([*TARGETS["reach_top_left"], 0.0, 0.0]))
    z_other = infer_goal(model, np.array([*TARGETS["reach_bottom_right"], 0.0, 0.0]))
    frames, returns = render_latents(model, task, {"goal": z_goal, "other": z_other}, seed=0, every=500, width=40, height=30)
    assert len(frames) == 3 and frames[0].shape == (30 + 22, 80, 3) and frames[0].dtype == np.uint8
    # Two latents share one batch, so the policy's matmuls differ in shape from a one-latent evaluation:
    # equal up to float rounding, which depends on the CPU's kernels (AVX2 against AVX-512).
    alone = evaluate_latent(model, task, z_goal, episodes=1, seed=0)[0]
    assert returns["goal"] == pytest.approx(alone, rel=1e-4)
    # One latent is the same computation as the evaluation: bit-exact.
    _, single = render_latents(model, task, {"goal": z_goal}, seed=0, every=500, width=40, height=30)
    assert single["goal"] == alone
    # Panels of one latent (an evolution video before the deployed latent moves) share one simulation.
    twice, same = render_latents(model, task, {"a": z_goal, "b": z_goal.clone()}, seed=0, every=500, width=40, height=30)
    assert same["a"] == same["b"] == alone
    np.testing.assert_array_equal(twice[-1][22:, :40], twice[-1][22:, 40:])
    assert returns["goal"] > 0
    # The point mass moves: the last frame differs from the first.
    assert np.abs(frames[-1].astype(int) - frames[0].astype(int)).sum() > 0

    gif = write_video(frames, tmp_path / "v.gif", fps=10)
    with Image.open(gif) as image:
        assert image.n_frames == 3 and image.size == (80, 52)
    with pytest.raises(FastBFMError, match="gif or .mp4"):
        write_video(frames, tmp_path / "v.avi")


def test_mp4_when_imageio_ffmpeg_is_installed(tmp_path):
    pytest.importorskip("imageio_ffmpeg")
    frames = [np.full((31, 45, 3), 10 * i, dtype=np.uint8) for i in range(5)]  # odd sizes are padded
    data = write_video(frames, tmp_path / "v.mp4", fps=5).read_bytes()
    assert data[4:8] == b"ftyp" and len(data) > 500


def _fastbfm(monkeypatch, capsys, *args):
    """The real entry point in this process (an interpreter start-up per command would dominate)."""
    monkeypatch.setattr(sys, "argv", ["fastbfm", *map(str, args)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    out, err = capsys.readouterr()
    assert exit_info.value.code in (0, None), err
    return json.loads(out)


def test_adapt_out_then_render_then_report_with_videos(tmp_path, maze_dataset_dir, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run"
    _fastbfm(monkeypatch, capsys, "adapt", "--model", "maze-fb", "--task", TASK, "--data", maze_dataset_dir, "--episodes", 1,
             "--seeds", 2, "--eval-episodes", 1, "--no-safe", "--out", run, "--json", "-q")
    result = load_run(run)["results"][0]
    assert len(result["z"]) == 2 and len(result["z"][0]) == len(result["z_zero_shot"]) == 50
    # every point keeps its latent and its episodes' returns, so the policy's evolution can be replayed
    assert result["episodes"] == [0.0, 1.0] and result["latents"][1][-1] == result["z"][1]
    assert result["latents"][0][0] == pytest.approx(result["z_zero_shot"], rel=1e-6)
    assert np.mean(result["episode_returns"][1][-1]) == pytest.approx(result["curves"][1][-1])

    info = _fastbfm(monkeypatch, capsys, "render", "--z-from", run, "--evolution", "--at", 0, "--at", 1, "--out", tmp_path / "evo.gif",
                    "--steps", 20, "--every", 10, "--width", 32, "--height", 24, "--json", "-q")
    assert info["panels"] == ["episode 0", "episode 1"]
    with Image.open(tmp_path / "evo.gif") as image:
        assert image.size == (64, 24 + 22)
    assert "cannot show the policy after 5" in _one_line_error(["render", "--z-from", run, "--evolution", "--at", 5, "--out", tmp_path / "e.gif"],
                                                                  monkeypatch, capsys)
    assert (run / "curves.csv").is_file() and (run / "adaptation_curves.png").is_file()

    info = _fastbfm(monkeypatch, capsys, "render", "--z-from", run, "--out", tmp_path / "side.gif", "--adapted-seed", 1,
                    "--steps", 20, "--every", 10, "--width", 32, "--height", 24, "--json", "-q")
    assert info["panels"] == ["zero-shot", "LoLA (unsafe) (seed 1)"] and info["frames"] == 3 and info["task"] == TASK
    with Image.open(tmp_path / "side.gif") as image:
        assert image.size == (64, 24 + 22)

    info = _fastbfm(monkeypatch, capsys, "report", run, "--videos", "--steps", 20, "--every", 10, "--width", 32, "--height", 24,
                    "--json", "-q")
    assert info["report"] == str(run / "report.html") and len(info["videos"]) == 1
    page = parse(run / "report.html")
    assert float(page.tables["summary"][1][6]["value"]) == pytest.approx(result["final"])
    assert sum(s.startswith("data:image/gif;base64,") for s in page.sources) == 1


def _one_line_error(args, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["fastbfm", *map(str, args)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    lines = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code not in (0, None) and len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


def test_user_errors_end_in_one_line(tmp_path, grid_payload, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write_run(tmp_path / "run", grid_payload)
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "empty.json").write_text("{}")
    run, gif = tmp_path / "run", tmp_path / "v.gif"
    cases = [
        (["report", tmp_path / "missing"], "no results"),
        (["report", tmp_path / "bad.json"], "not valid JSON"),
        (["report", tmp_path / "empty.json"], "no 'results'"),
        (["report", run, "--videos", "--video-format", "avi"], "gif or mp4"),
        (["render", "--model", "maze-fb", "--task", TASK, "--out", tmp_path / "v.avi"], ".gif or .mp4"),
        (["render", "--model", "maze-fb", "--out", gif], "needs --model and --task"),
        (["render", "--z-from", run, "--out", gif], "several runs"),
        (["render", "--z-from", run, "--task", "point_mass_maze:reach_top_right", "--out", gif], "no adapted latents"),
        (["render", "--z-from", run, "--task", TASK, "--method", "cem", "--out", gif], "hold no"),
        (["render", "--z-from", run, "--task", TASK, "--method", "lola", "--adapted-seed", 7, "--out", gif], "no adaptation seed 7"),
        (["render", "--z-from", run, "--task", TASK, "--method", "lola", "--camera", "nope", "--out", gif], "no camera 'nope'"),
    ]
    for args, words in cases:
        assert words in _one_line_error(args, monkeypatch, capsys)


def test_docs_use_only_real_commands_and_options():
    """Every `fastbfm ...` line of the quickstart, README and CLI reference names a real command and real options."""
    import re
    from pathlib import Path

    import typer.main

    from fastbfm.cli import app

    root = Path(__file__).resolve().parent.parent
    group = typer.main.get_command(app)
    cli_md = (root / "docs" / "cli.md").read_text()
    checked = 0
    for doc in ("docs/quickstart.md", "README.md", "docs/design.md", "docs/metamotivo.md"):
        for block in re.findall(r"```bash\n(.*?)```", (root / doc).read_text(), re.S):
            for command_line in re.findall(r"(?:^|&& |\s)fastbfm ([^#&\n]*)", block, re.M):
                words = command_line.split()
                command = group.commands.get(words[0])
                assert command is not None, f"{doc}: no command fastbfm {words[0]}"
                if hasattr(command, "commands"):
                    command = command.commands[words[1]]
                assert f"## fastbfm {words[0]}" in cli_md, f"docs/cli.md lacks fastbfm {words[0]}"
                options = {o for p in command.params for o in [*p.opts, *getattr(p, "secondary_opts", [])]}
                for word in words:
                    if word.startswith("-"):
                        assert word in options, f"{doc}: fastbfm {words[0]} has no option {word}"
                checked += 1
    assert checked > 20


def test_report_videos_skip_results_without_a_single_latent(tmp_path, grid_payload, monkeypatch, capsys):
    finetuned = dict(grid_payload["results"][2], method="finetune", z=[None, None], z_zero_shot=[0.0] * 50)
    write_run(tmp_path, {"model": "maze-fb", "results": [grid_payload["results"][2], finetuned]})
    info = _fastbfm(monkeypatch, capsys, "report", tmp_path, "--videos", "--json", "-q")
    assert info["videos"] == []
    assert info["no_video"] == ["point_mass_maze:reach_top_right (lola)", "point_mass_maze:reach_top_right (finetune)"]
    assert len(parse(tmp_path / "report.html").tables["summary"]) == 3
    with pytest.raises(FastBFMError, match="adapts no single latent"):
        adapted_latent(finetuned)
