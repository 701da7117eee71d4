"""GPU checks (skipped without CUDA): the captured update never synchronises with the host, replays
match eager updates, and pretrain's run folders move between a GPU and the CPU.

Run on a GPU machine: ``python -m pytest -q tests/test_gpu.py``."""

import json

import pytest
import torch

from fastbfm.bfm.algorithms import get_algorithm, preset
from fastbfm.bfm.checkpoint import load_model
from fastbfm.bfm.step import GraphedStep, MetricSums, eager_step, make_step
from fastbfm.bfm.train import pretrain
from fastbfm.data.dataset import TorchTransitions

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

CUDA = torch.device("cuda")
OBS, ACT = 24, 6  # walker's sizes


def _data(n=100_000, seed=0):
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(n, OBS, generator=g)
    action = torch.rand(n, ACT, generator=g) * 2 - 1
    ends = ((torch.arange(n) // 25 + 1) * 25).clamp_max(n)
    return TorchTransitions(*(t.to(CUDA) for t in (obs, action, obs.roll(-1, 0), torch.ones(n), ends)))


def _trainer(algorithm, preset_name="cpu", seed=0):
    model_config, train_config = preset(algorithm, preset_name, OBS, ACT)
    algo = get_algorithm(algorithm)
    torch.manual_seed(seed)
    return algo.trainer(algo.model(model_config).to(CUDA), train_config, torch.Generator(CUDA).manual_seed(seed))


def _steps_without_host_sync(step, count):
    """Run ``count`` steps with any host synchronisation raising an error."""
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(count):
            step()
    finally:
        torch.cuda.set_sync_debug_mode("default")


@pytest.mark.parametrize("algorithm", ["fb", "hilp", "psm"])
@pytest.mark.parametrize("preset_name", ["cpu", "paper"])
def test_captured_update_never_synchronises(algorithm, preset_name):
    trainer, sums = _trainer(algorithm, preset_name), MetricSums(CUDA)
    step = make_step(trainer, _data(), sums, graphs=True)
    for _ in range(4):  # warm-ups, then the capture
        step()
    assert isinstance(step, GraphedStep) and step.captured, "the capture fell back to eager"
    _steps_without_host_sync(step, 50)
    count, first_bad, means = sums.read()
    assert count == 54 and first_bad == 0
    assert all(v == v for v in means.values())


@pytest.mark.parametrize("algorithm", ["fb", "hilp", "psm"])
def test_eager_update_never_synchronises(algorithm):
    trainer, sums = _trainer(algorithm), MetricSums(CUDA)
    step = eager_step(trainer, _data(), sums)
    step()  # lazily created optimiser state
    _steps_without_host_sync(step, 5)


@pytest.mark.parametrize("algorithm", ["fb", "hilp", "psm"])
def test_replays_match_eager_updates(algorithm):
    """Same kernels in the same order with the same generator offsets: equal up to the reduction
    order some kernels pick per launch (a tolerance, reported)."""
    data = _data()
    results = []
    for graphs in (False, True):
        trainer, sums = _trainer(algorithm), MetricSums(CUDA)
        step = make_step(trainer, data, sums, graphs=graphs)
        for _ in range(30):
            step()
        results.append((trainer.model.state_dict(), sums.read()[2]))
    (wa, ma), (wb, mb) = results
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-4, atol=1e-5, msg=k)
    assert ma.keys() == mb.keys()


def test_pretrain_on_cuda_then_resume_on_the_cpu(maze_dataset_dir, tmp_path, monkeypatch):
    from fastbfm.bfm import fb

    monkeypatch.setitem(fb.PRESETS, "tiny", (dict(z_dim=8, hidden_dim=32, backward_hidden_dim=32), fb.FBTrainConfig(batch_size=32)))
    run = dict(checkpoint_every=20, log_every=10, threads=1, progress=False)
    pretrain(maze_dataset_dir, tmp_path / "run", "tiny", num_updates=40, device="cuda", **run)
    model = load_model(tmp_path / "run")
    assert model.meta["history"][0]["device"] == torch.cuda.get_device_name() and model.meta["history"][0]["cuda_graphs"]
    pretrain(maze_dataset_dir, tmp_path / "run", "tiny", num_updates=60, device="cpu", **run)
    history = load_model(tmp_path / "run").meta["history"]
    assert [(h["from_step"], h["device"]) for h in history] == [(0, torch.cuda.get_device_name()), (40, "cpu")]
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [10, 20, 30, 40, 50, 60]


def test_bench_train_on_cuda_reports_the_device():
    from fastbfm.bench import bench_train

    result = bench_train("walker", updates=20, device="cuda", presets=["cpu"], algorithms=["fb"])
    assert result["device"] == torch.cuda.get_device_name()
    assert result["results"][0]["updates_per_s"] > 0
