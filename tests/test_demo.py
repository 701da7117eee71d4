import json
import subprocess
import sys

import pytest

from fastbfm.zoo import shipped_models


def test_shipped_maze_model_is_listed_and_loads():
    from fastbfm.bfm.checkpoint import load_model
    from fastbfm.zoo import resolve_model

    assert "maze-fb" in shipped_models()
    model = load_model(resolve_model("maze-fb"))
    assert (model.obs_dim, model.action_dim) == (4, 2)
    assert model.meta["domain"] == "point_mass_maze"


@pytest.mark.slow
def test_demo_runs_and_reports_json(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "fastbfm", "demo", "--episodes", "2", "--seeds", "1", "--json", "-q", "--out", tmp_path / "out"],
        capture_output=True, text=True, cwd=tmp_path, timeout=900,
    )
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert len(payload["results"]) == 4
    assert (tmp_path / "out" / "adaptation_curves.png").stat().st_size > 1000
