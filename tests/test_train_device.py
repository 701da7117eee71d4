"""Trainers on a device: device choice, the update without host synchronisation, the captured step
(checked on the CPU by tracing it with make_fx and replaying the trace, which like a CUDA graph runs
only the recorded kernels on the same tensors), the metric sums, and the resume rules of pretrain."""

import json
import multiprocessing
import os

import pytest
import torch
from safetensors.torch import load_file
from torch.fx.experimental.proxy_tensor import make_fx

from fastbfm.bfm.algorithms import get_algorithm, preset
from fastbfm.bfm.checkpoint import load_model, read_json
from fastbfm.bfm.device import resolve_device
from fastbfm.bfm.fb import FBTrainConfig
from fastbfm.bfm.step import GraphedStep, MetricSums, eager_step
from fastbfm.bfm.train import pretrain
from fastbfm.locks import LOCK_FILE as LOCK, folder_lock
from fastbfm.data.dataset import TorchTransitions
from fastbfm.errors import FastBFMError

TINY = (dict(z_dim=8, hidden_dim=32, backward_hidden_dim=32), FBTrainConfig(batch_size=32))


def test_device_choice():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(FastBFMError, match="unknown device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(FastBFMError, match="sees no CUDA device"):
            resolve_device("cuda")


def _data(n=200, obs_dim=4, action_dim=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(n, obs_dim, generator=g)
    episode_end = (torch.arange(n) // 20 + 1) * 20
    return TorchTransitions(obs, torch.rand(n, action_dim, generator=g) * 2 - 1, obs.roll(-1, 0), torch.ones(n), episode_end)


def _trainer(algorithm, seed=0):
    model_config, train_config = preset(algorithm, "cpu", 4, 2, batch_size=16)
    model_config = type(model_config)(**{**model_config.__dict__, "z_dim": 8, "hidden_dim": 32})
    algo = get_algorithm(algorithm)
    torch.manual_seed(seed)
    return algo.trainer(algo.model(model_config), train_config, torch.Generator().manual_seed(seed))


def _state(trainer, sums):
    tensors = dict(trainer.model.state_dict())
    for name, module in trainer.modules().items():
        tensors.update({f"{name}.{k}": v for k, v in module.state_dict().items()})
    for name, opt in trainer.optimizers().items():
        for i, entries in enumerate(opt.state.values()):
            tensors.update({f"{name}.{i}.{k}": v for k, v in entries.items()})
    tensors.update(sums.state()[0])
    tensors["rng"] = trainer.generator.get_state()
    return tensors


class TraceBackend:
    """A CPU stand-in for CUDA graphs: the 'capture' traces one step into its aten operations (make_fx,
    real tensors), the 'replay' runs only that trace. Unlike a CUDA capture, tracing also executes the
    step once, so the capture call counts as a step here; the test accounts for it."""

    def __init__(self):
        self.warmups = 0

    def warmup(self, fn):
        self.warmups += 1
        fn()

    def capture(self, fn):
        return make_fx(fn, tracing_mode="real")()


@pytest.mark.parametrize("algorithm", ["fb", "hilp", "psm"])
def test_replayed_trace_of_the_step_equals_eager_steps_bit_for_bit(algorithm):
    """Nothing in the step may depend on host-side values that a capture would freeze (a step count
    read with .item(), a Python counter, a tensor allocated anew each update and read afterwards):
    after 3 warm-ups, a trace and 4 replays, every weight, target, optimiser moment, metric sum and the
    generator equal those of 8 eager steps."""
    data = _data()
    eager, eager_sums = _trainer(algorithm), MetricSums("cpu")
    step = eager_step(eager, data, eager_sums)
    for _ in range(8):
        step()
    traced, traced_sums = _trainer(algorithm), MetricSums("cpu")
    backend = TraceBackend()
    graphed = GraphedStep(eager_step(traced, data, traced_sums), backend, warmup=3)
    for _ in range(7):  # 3 warm-ups, the trace (one step here), then replays
        graphed()
    assert backend.warmups == 3 and graphed.captured
    a, b = _state(eager, eager_sums), _state(traced, traced_sums)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert eager_sums.read()[0] == 8


def test_the_trace_check_catches_a_step_that_reads_a_host_value():
    """The check above can fail: Adam's non-fused CPU step reads its step count back as a Python number
    (bias correction). Tracing refuses it as a CUDA capture refuses a sync, and the step stays eager."""
    trainer = _trainer("fb")
    for opt in trainer.optimizers().values():
        for group in opt.param_groups:
            group["fused"] = None  # the single-tensor path
    graphed = GraphedStep(eager_step(trainer, _data(), MetricSums("cpu")), TraceBackend(), warmup=1)
    graphed()
    with pytest.warns(UserWarning, match="capture failed .*value out of a tracing tensor"):
        graphed()
    assert not graphed.captured


def test_metric_sums_average_report_the_first_bad_update_and_reset_in_place():
    sums = MetricSums("cpu")
    tensors = sums.state()[0]
    sums.add({"a": torch.tensor(1.0), "b": torch.tensor(2.0)})
    sums.add({"a": torch.tensor(3.0), "b": torch.tensor(float("inf"))})
    sums.add({"a": torch.tensor(float("nan")), "b": torch.tensor(0.0)})
    count, first_bad, means = sums.read()
    assert count == 3 and first_bad == 2 and means["b"] == float("inf")
    with pytest.raises(FastBFMError, match="expected"):
        sums.add({"a": torch.tensor(1.0)})
    sums.reset()
    assert sums.read() == (0, 0, {"a": 0.0, "b": 0.0})
    # reset zeroes the same tensors a captured graph adds into
    assert all(t is sums.state()[0][k] for k, t in tensors.items() if k != "metrics.sums")


def _rows(run, drop_time=True):
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "time_s"} if drop_time else r for r in rows]


def _same_run(a, b):
    ma, mb = load_model(a).state_dict(), load_model(b).state_dict()
    assert all(torch.equal(ma[k], mb[k]) for k in ma)
    ta, tb = (load_file(next(r.glob("trainer-*.safetensors"))) for r in (a, b))
    assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)
    assert _rows(a) == _rows(b)


def test_time_limit_stops_with_a_checkpoint_and_the_rerun_equals_an_uninterrupted_run(maze_dataset_dir, tmp_path, tiny_preset):
    run = dict(num_updates=40, checkpoint_every=20, log_every=7, threads=1, progress=False, device="cpu")
    pretrain(maze_dataset_dir, tmp_path / "straight", "tiny", **run)
    pretrain(maze_dataset_dir, tmp_path / "stopped", "tiny", max_minutes=0, **run)
    assert read_json(tmp_path / "stopped" / "trainer.json")["step"] == 1  # stopped after its first update
    assert _rows(tmp_path / "stopped") == []
    pretrain(maze_dataset_dir, tmp_path / "stopped", "tiny", **run)
    _same_run(tmp_path / "straight", tmp_path / "stopped")
    steps = [r["step"] for r in _rows(tmp_path / "straight")]
    assert steps == [7, 14, 21, 28, 35, 40]
    history = load_model(tmp_path / "stopped").meta["history"]
    assert history == [{"from_step": 0, "device": "cpu", "precision": "fp32", "cuda_graphs": False, "learning_rates": {"lr_f": 1e-4, "lr_b": 1e-4, "lr_actor": 1e-4}}]


def test_rerun_with_changed_options_is_refused_with_the_differences(maze_dataset_dir, tmp_path, tiny_preset):
    run = dict(num_updates=10, checkpoint_every=10, threads=1, progress=False, device="cpu")
    pretrain(maze_dataset_dir, tmp_path / "run", "tiny", **run)
    before = (tmp_path / "run" / "trainer.json").read_text()
    with pytest.raises(FastBFMError, match=r"train.discount 0.99 -> 0.9; seed 0 -> 1; train.lr_f 0.0001 -> 0.001"):
        pretrain(maze_dataset_dir, tmp_path / "run", "tiny", seed=1, train_overrides={"discount": 0.9, "lr_f": 1e-3}, **run)
    with pytest.raises(FastBFMError, match="--allow-new-lr"):
        pretrain(maze_dataset_dir, tmp_path / "run", "tiny", train_overrides={"lr_f": 1e-3}, **{**run, "num_updates": 20})
    with pytest.raises(FastBFMError, match="log_every 1000 -> 5"):
        pretrain(maze_dataset_dir, tmp_path / "run", "tiny", log_every=5, **run)
    assert (tmp_path / "run" / "trainer.json").read_text() == before  # nothing written
    # more updates, another thread count or checkpoint interval: the same run, continued
    pretrain(maze_dataset_dir, tmp_path / "run", "tiny", **{**run, "num_updates": 12, "checkpoint_every": 3, "threads": 2})
    assert read_json(tmp_path / "run" / "trainer.json")["step"] == 12


def test_allow_new_lr_continues_with_the_new_rates_as_a_new_segment(maze_dataset_dir, tmp_path, tiny_preset):
    run = dict(checkpoint_every=10, threads=1, progress=False, device="cpu")
    pretrain(maze_dataset_dir, tmp_path / "run", "tiny", num_updates=10, **run)
    pretrain(maze_dataset_dir, tmp_path / "run", "tiny", num_updates=20, train_overrides={"lr_actor": 3e-4}, allow_new_lr=True, **run)
    history = load_model(tmp_path / "run").meta["history"]
    assert [(h["from_step"], h["learning_rates"]["lr_actor"]) for h in history] == [(0, 1e-4), (10, 3e-4)]
    state = read_json(tmp_path / "run" / "trainer.json")
    assert state["optimizers"]["actor"]["param_groups"][0]["lr"] == 3e-4
    assert state["run"]["train"]["lr_actor"] == 3e-4
    # the same rerun again is the same segment
    pretrain(maze_dataset_dir, tmp_path / "run", "tiny", num_updates=25, train_overrides={"lr_actor": 3e-4}, **run)
    assert len(load_model(tmp_path / "run").meta["history"]) == 2


def _hold_lock(run_dir, ready, release):
    with folder_lock(run_dir, "pretrain"):
        ready.set()
        release.wait(60)


def test_a_second_writer_is_refused_and_a_dead_holders_lock_is_taken_over(maze_dataset_dir, tmp_path, tiny_preset):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    ctx = multiprocessing.get_context("fork")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(run_dir, ready, release))
    holder.start()
    try:
        assert ready.wait(60)
        with pytest.raises(FastBFMError, match=f"another process \\(pid {holder.pid}"):
            pretrain(maze_dataset_dir, run_dir, "tiny", num_updates=2, threads=1, progress=False, device="cpu")
    finally:
        release.set()
        holder.join()
    # the holder is gone; its pid is still in the file, and the lock is free
    assert (run_dir / LOCK).read_text().strip() == str(holder.pid)
    pretrain(maze_dataset_dir, run_dir, "tiny", num_updates=2, threads=1, progress=False, device="cpu")
    assert (run_dir / LOCK).read_text().strip() == str(os.getpid())


def test_a_run_killed_before_its_first_checkpoint_starts_its_log_again(maze_dataset_dir, tmp_path, tiny_preset):
    run = dict(num_updates=20, checkpoint_every=20, log_every=5, threads=1, progress=False, device="cpu")
    pretrain(maze_dataset_dir, tmp_path / "straight", "tiny", **run)
    killed = tmp_path / "killed"
    killed.mkdir()
    # what a kill before the first checkpoint leaves: rows and no trainer.json
    (killed / "metrics.jsonl").write_text((tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()[0] + "\n" + '{"step": 10, "fb_lo')
    pretrain(maze_dataset_dir, killed, "tiny", **run)
    _same_run(tmp_path / "straight", killed)


def test_resume_keeps_the_moments_but_runs_the_optimiser_this_device_way(maze_dataset_dir, tmp_path, tiny_preset):
    """A checkpoint from another device or version (here: Adam's unfused path recorded) resumes with
    this device's implementation (fused on the CPU; fused and capturable on CUDA)."""
    from fastbfm.bfm.checkpoint import write_json

    run = dict(checkpoint_every=5, threads=1, progress=False, device="cpu")
    pretrain(maze_dataset_dir, tmp_path / "run", "tiny", num_updates=5, **run)
    state = read_json(tmp_path / "run" / "trainer.json")
    for groups in state["optimizers"].values():
        for group in groups["param_groups"]:
            group["fused"] = None
    write_json(tmp_path / "run" / "trainer.json", state)
    pretrain(maze_dataset_dir, tmp_path / "run", "tiny", num_updates=10, **run)
    state = read_json(tmp_path / "run" / "trainer.json")
    assert all(g["fused"] is True for groups in state["optimizers"].values() for g in groups["param_groups"])


def test_a_run_resumes_only_on_the_data_it_was_trained_on(tmp_path, tiny_preset):
    """Before: the dataset at the same path replaced by another collection of the same size resumed with exit 0."""
    import shutil

    from fastbfm.data.collect import CollectConfig, collect

    data = tmp_path / "data"
    collect(CollectConfig(episodes=20, num_envs=10, seed=1), data, progress=False)
    run = dict(checkpoint_every=10, threads=1, progress=False, device="cpu")
    pretrain(data, tmp_path / "run", "tiny", num_updates=10, **run)
    recorded = read_json(tmp_path / "run" / "trainer.json")["run"]["dataset_digest"]
    assert recorded == read_json(data / "manifest.json")["digest"]
    shutil.rmtree(data)
    collect(CollectConfig(episodes=20, num_envs=10, seed=2), data, progress=False)  # same path, same size, other data
    before = (tmp_path / "run" / "trainer.json").read_text()
    with pytest.raises(FastBFMError, match=rf"trained on other data.*{recorded[:16]}\.\.\. then"):
        pretrain(data, tmp_path / "run", "tiny", num_updates=20, **run)
    assert (tmp_path / "run" / "trainer.json").read_text() == before
    shutil.rmtree(data)
    collect(CollectConfig(episodes=20, num_envs=10, seed=1), data, progress=False)  # the same data again: resumes
    pretrain(data, tmp_path / "run", "tiny", num_updates=20, **run)
    assert read_json(tmp_path / "run" / "trainer.json")["step"] == 20


def test_a_manifest_whose_digest_disagrees_with_its_files_is_refused(tmp_path):
    from fastbfm.data.collect import CollectConfig, collect
    from fastbfm.data.dataset import load_dataset

    collect(CollectConfig(episodes=20, num_envs=10, seed=1), tmp_path, progress=False)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    manifest["digest"] = "0" * 64
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(FastBFMError, match="digest does not match"):
        load_dataset(tmp_path)
