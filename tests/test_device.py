"""--device on eval, adapt, grid, headroom and render: the model on a device behind the protocol's CPU interface.

Without a GPU these check the plumbing: the wrapper on the CPU computes exactly what the bare model does
(every protocol call, a rollout, fine-tuning's copies and gradients), `cpu` leaves the model untouched,
and asking for CUDA where there is none fails in one line before anything runs. The CUDA cases are in
test_device_cuda.py (the GPU job runs it).
"""

import copy
import json
import sys

import numpy as np
import pytest
import torch

from fastbfm.adapt.finetune import Finetune, FinetuneConfig
from fastbfm.adapt.lola import LoLAConfig
from fastbfm.adapt.zero_shot import TaskPrompt
from fastbfm.bfm.fb import FBModel, FBModelConfig
from fastbfm.bfm.placement import OnDevice, place
from fastbfm.cli import main
from fastbfm.envs import get_task
from fastbfm.evaluate.experiments import adapt
from fastbfm.rollout import evaluate_latent

MAZE = "point_mass_maze:reach_top_left"

def _model(seed=0):
    torch.manual_seed(seed)
    model = FBModel(FBModelConfig(obs_dim=4, action_dim=2, z_dim=8, hidden_dim=32, backward_hidden_dim=32))
    model.set_normalization(torch.zeros(4), torch.full((4,), 0.2))
    model.discount = 0.99
    return model


def _cli(args, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["fastbfm", *map(str, args)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def test_place_on_the_cpu_returns_the_model_itself():
    model = _model()
    assert place(model, "cpu") is model
    assert place(OnDevice(model, torch.device("cpu")), "cpu") is model


def test_every_protocol_call_through_the_wrapper_equals_the_bare_model():
    model = _model()
    wrapped = OnDevice(copy.deepcopy(model), torch.device("cpu"))
    g = torch.Generator().manual_seed(1)
    obs, action = torch.randn(5, 4, generator=g), torch.rand(5, 2, generator=g) * 2 - 1
    z = model.project(torch.randn(5, 8, generator=g))
    rewards = torch.rand(5, generator=g)
    calls = {
        "act": (obs, z),
        "features": (obs,),
        "successor_features": (obs, action, z),
        "q_value": (obs, action, z, z[0]),
        "reward_embedding": (obs, rewards),
        "infer_from_rewards": (obs, rewards),
        "infer_from_goal": (obs[0],),
        "project": (z * 3,),
    }
    for name, args in calls.items():
        expected, got = getattr(model, name)(*args), getattr(wrapped, name)(*args)
        assert got.device.type == "cpu" and torch.equal(got, expected), name
    assert torch.equal(wrapped.sample_z(3, torch.Generator().manual_seed(2)), model.sample_z(3, torch.Generator().manual_seed(2)))
    assert (wrapped.obs_dim, wrapped.z_dim, wrapped.algorithm, wrapped.discount) == (model.obs_dim, model.z_dim, model.algorithm, 0.99)


def test_rollouts_and_lola_through_the_wrapper_match_the_bare_model(maze_dataset_dir):
    from fastbfm.data.dataset import load_dataset

    task = get_task(MAZE)
    model = _model()
    wrapped = OnDevice(copy.deepcopy(model), torch.device("cpu"))
    z = model.sample_z(1, torch.Generator().manual_seed(0))[0]
    np.testing.assert_array_equal(evaluate_latent(wrapped, task, z, episodes=3), evaluate_latent(model, task, z, episodes=3))
    dataset = load_dataset(maze_dataset_dir)
    config = LoLAConfig(episodes=4, num_candidates=2, eval_episodes=2, safe=None)
    bare, placed = adapt(model, task, dataset, config, [0]), adapt(wrapped, task, dataset, config, [0])
    assert bare["curves"] == placed["curves"]


def test_finetuning_trains_the_wrapped_networks():
    """Fine-tuning deep-copies the model and optimises its parameters: through the wrapper they are the
    wrapped networks' own, gradients reach them, and the original stays frozen."""
    model = _model()
    original = {k: v.clone() for k, v in model.state_dict().items()}
    wrapped = OnDevice(model, torch.device("cpu"))
    z = model.sample_z(1, torch.Generator().manual_seed(0))[0]
    prompt = TaskPrompt(z=z, w=z, num_samples=1, num_rewarded=1)
    tuner = Finetune(wrapped, prompt, FinetuneConfig(episodes=2, updates_per_episode=3, batch_size=8), seed=0, episode_length=20)
    assert isinstance(tuner.online, OnDevice) and isinstance(tuner.target, OnDevice)
    before = [p.detach().clone() for p in tuner.critic_params]
    rng = np.random.default_rng(0)
    for _ in range(2):
        obs = rng.normal(size=(21, 4)).astype(np.float32)
        tuner.buffer.add(obs[:-1], rng.uniform(-1, 1, (20, 2)), rng.uniform(size=20), obs[1:])
    for _ in range(3):
        tuner.update()
    assert any(not torch.equal(a, b) for a, b in zip(before, tuner.critic_params))
    assert all(torch.equal(v, original[k]) for k, v in model.state_dict().items())


def test_cuda_without_a_gpu_is_refused_in_one_line(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cases = [
        ["eval", "--model", "maze-fb", "--task", MAZE, "--goal", "0.1,0.1,0,0", "--device", "cuda"],
        ["adapt", "--model", "maze-fb", "--task", MAZE, "--method", "opti-thompson", "--episodes", "1", "--device", "cuda"],
        ["headroom", "--model", "maze-fb", "--task", MAZE, "--device", "cuda"],
        ["render", "--model", "maze-fb", "--task", MAZE, "--out", tmp_path / "v.gif", "--device", "cuda"],
        ["grid", "--out", tmp_path / "g", "--model", "maze-fb", "--task", MAZE, "--device", "cuda"],
        ["eval", "--model", "maze-fb", "--task", MAZE, "--goal", "0.1,0.1,0,0", "--device", "tpu"],
    ]
    for args in cases:
        code, _, err = _cli(args, monkeypatch, capsys)
        lines = err.strip().splitlines()
        assert code == 1 and len(lines) == 1 and lines[0].startswith("error: ") and args[-1] in lines[0], (args, err)
    assert not (tmp_path / "g").exists() and not (tmp_path / "v.gif").exists()


def test_explicit_cpu_gives_the_default_results(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # auto is the CPU here, as on any GPU-less machine
    base = ["eval", "--model", "maze-fb", "--task", MAZE, "--goal", "0.15,0.15,0,0", "--episodes", "2", "--json", "-q"]
    runs = [_cli(base + extra, monkeypatch, capsys) for extra in ([], ["--device", "cpu"], ["--device", "auto"])]
    assert all(code == 0 for code, _, _ in runs)
    results = [json.loads(out)["results"] for _, out, _ in runs]
    assert results[0] == results[1] == results[2]
