"""Every shipped model loads, fits its domain, and carries its card and zero-shot table."""

import json

import pytest
import torch

from fastbfm.bfm.checkpoint import load_model
from fastbfm.bfm.protocol import BFM
from fastbfm.envs import list_tasks
from fastbfm.envs.registry import get_domain
from fastbfm.errors import FastBFMError
from fastbfm.report.zoo_table import zoo_table
from fastbfm.zoo import ZOO_DIR, resolve_model, shipped_models


@pytest.mark.parametrize("name", shipped_models())
def test_shipped_model_loads_fits_its_domain_and_has_its_card(name):
    model = load_model(resolve_model(name))
    assert isinstance(model, BFM)
    domain = get_domain(model.meta["domain"])
    assert (model.obs_dim, model.action_dim) == (domain.observation_dim, domain.action_dim)
    obs = torch.zeros(2, model.obs_dim)
    assert model.act(obs, model.sample_z(2)).abs().max() <= 1
    assert (ZOO_DIR / name / "MODEL_CARD.md").is_file()
    rows = json.loads((ZOO_DIR / name / "zero_shot.json").read_text())["rows"]
    assert sorted(r["task"] for r in rows) == sorted(list_tasks(model.meta["domain"]))
    # the discount adaptation bootstraps with is the one the trainer ran with (its config, saved with the weights)
    assert model.discount == model.meta["train"]["discount"] and f"discount {model.discount}" in (ZOO_DIR / name / "MODEL_CARD.md").read_text()


def test_zoo_table_lists_every_shipped_model():
    table = zoo_table()
    for name in shipped_models():
        assert f"`{name}`" in table


@pytest.mark.parametrize("name", shipped_models())
def test_card_zero_shot_section_matches_its_json(name):
    """The card's table and zero_shot.json come from one measurement: same episode count, same returns."""
    card = (ZOO_DIR / name / "MODEL_CARD.md").read_text()
    measured = json.loads((ZOO_DIR / name / "zero_shot.json").read_text())
    assert f"## Zero-shot returns ({measured['episodes']} episodes per task" in card
    for row in measured["rows"]:
        assert f"| {row['task']} | {row['zero_shot']:.1f} +- {row['zero_shot_std']:.1f} | {row['random']:.1f} +- {row['random_std']:.1f} |" in card


def test_card_then_zero_shot_rewrite_keeps_the_card_and_its_json_in_step(tmp_path, maze_dataset_dir, monkeypatch):
    """Re-measuring a shipped model rewrites its zero-shot section and json together and keeps the training section."""
    from fastbfm.bfm.checkpoint import save_model
    from fastbfm.bfm.fb import FBModel, FBModelConfig
    from fastbfm.data import load_dataset
    from fastbfm.report import card

    monkeypatch.setattr(card, "ZOO_DIR", tmp_path / "zoo")
    monkeypatch.setattr(card, "ensure_dataset", lambda domain, progress=False: load_dataset(maze_dataset_dir))
    monkeypatch.setattr(card, "list_tasks", lambda domain: ["point_mass_maze:reach_top_left"])  # the room the small dataset reaches
    run = tmp_path / "run"
    save_model(FBModel(FBModelConfig(obs_dim=4, action_dim=2, z_dim=8, hidden_dim=16, backward_hidden_dim=16)), run,
               meta={"domain": "point_mass_maze", "updates": 7})
    written = card.write_card(run, "tiny", "point_mass_maze", episodes=1, notes=["a provenance line"])
    before = (written / "MODEL_CARD.md").read_text()
    assert "(1 episodes per task" in before and "a provenance line" in before

    card.rewrite_zero_shot(load_model(written), "tiny", "point_mass_maze", episodes=2)
    after = (written / "MODEL_CARD.md").read_text()
    measured = json.loads((written / "zero_shot.json").read_text())
    assert measured["episodes"] == 2 and [r["task"] for r in measured["rows"]] == ["point_mass_maze:reach_top_left"]
    assert after.startswith(before[: before.index("## Zero-shot returns")]) and "(2 episodes per task" in after
    assert after.count("## Zero-shot returns") == 1 and "--zero-shot-only --episodes 2" in after
    for row in measured["rows"]:
        assert f"| {row['task']} | {row['zero_shot']:.1f} +- {row['zero_shot_std']:.1f} |" in after


def test_zero_shot_rewrite_refuses_a_card_without_its_section(tmp_path, monkeypatch):
    from fastbfm.report import card

    monkeypatch.setattr(card, "ZOO_DIR", tmp_path)
    (tmp_path / "tiny").mkdir()
    (tmp_path / "tiny" / "MODEL_CARD.md").write_text("# tiny\n\nno table here\n")
    with pytest.raises(FastBFMError, match="no .## Zero-shot returns. section"):
        card.rewrite_zero_shot(None, "tiny", "point_mass_maze", episodes=2)
    assert not (tmp_path / "tiny" / "zero_shot.json").exists()


def test_models_lists_each_shipped_model_with_its_training_discount(monkeypatch, capsys):
    import sys

    from fastbfm.cli import main
    from fastbfm.models import load_model

    monkeypatch.setattr(sys, "argv", ["fastbfm", "models", "--json"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    rows = json.loads(capsys.readouterr().out)["models"]
    assert exit_info.value.code == 0 and [r["name"] for r in rows] == shipped_models()
    assert all(r["discount"] == load_model(r["name"]).discount for r in rows)


def test_zoo_table_published_column_holds_only_trusted_figures_with_their_source():
    """Targets are figures read in the paper ([V]) or in a table checked against its domain mean ([V-parse])."""
    from fastbfm.report.zoo_table import PUBLISHED, SOURCES

    table = zoo_table()
    for column, figures in PUBLISHED.items():
        assert SOURCES.get(column), f"{column} has no source"
        assert f"- {column}: {SOURCES[column]}" in table
        for task, (value, tag) in figures.items():
            assert tag in ("V", "V-parse")
            assert 0 <= value <= 1000
            domain, name = task.split(":")
            assert task in list_tasks(domain)
            section = table.split(f"## {domain}\n")[1].split("\n## ")[0]
            assert f"| {name} |" in section and f"{value:.0f} [{tag}]" in section
