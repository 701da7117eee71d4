"""--device cuda for inference (skipped without CUDA; the GPU job runs this file): evaluation on the GPU
matches the CPU's within float tolerance, and zero-shot inference runs there.

Run on a GPU machine: ``python -m pytest -q tests/test_device_cuda.py``."""

import json
import sys

import pytest
import torch

from fastbfm.bfm.fb import FBModel, FBModelConfig
from fastbfm.bfm.placement import place
from fastbfm.cli import main

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
MAZE = "point_mass_maze:reach_top_left"


def _cli(args, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["fastbfm", *map(str, args)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    return exit_info.value.code, capsys.readouterr().out


def test_eval_on_cuda_matches_the_cpu(monkeypatch, capsys):
    base = ["eval", "--model", "maze-fb", "--task", MAZE, "--goal", "0.15,0.15,0,0", "--episodes", "4", "--json", "-q"]
    (c1, cpu), (c2, gpu) = (_cli(base + ["--device", d], monkeypatch, capsys) for d in ("cpu", "cuda"))
    assert c1 == c2 == 0
    for a, b in zip(json.loads(cpu)["results"], json.loads(gpu)["results"]):
        # TF32 and other kernels change the actions' last bits; closed-loop returns drift a little
        assert b["zero_shot"] == pytest.approx(a["zero_shot"], rel=0.1, abs=5)


def test_zero_shot_inference_runs_on_the_device():
    torch.manual_seed(0)
    model = place(FBModel(FBModelConfig(obs_dim=4, action_dim=2, z_dim=8, hidden_dim=32, backward_hidden_dim=32)), "cuda")
    assert next(model.model.parameters()).device.type == "cuda"
    w = model.reward_embedding(torch.randn(100, 4), torch.rand(100))
    assert w.device.type == "cpu" and w.shape == (8,)
