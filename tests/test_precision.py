"""bf16 training: detection of native bf16, networks in bf16 with float32 master weights and losses,
and the precision recorded in a run's history."""

import pytest
import torch

from fastbfm.bfm import device as device_module
from fastbfm.bfm import losses
from fastbfm.bfm.algorithms import get_algorithm, preset
from fastbfm.bfm.nn import TwoStreamNet, mlp, set_compute_dtype
from fastbfm.bfm.step import MetricSums, eager_step, set_training_precision
from fastbfm.data.dataset import TorchTransitions

CPU = torch.device("cpu")


@pytest.mark.parametrize(
    "flags, native",
    [({"avx2", "fma"}, False), ({"avx2", "avx512f", "avx512_bf16"}, True), ({"amx_bf16", "amx_tile"}, True), ({"asimd", "bf16"}, True), (set(), False)],
)
def test_bf16_is_the_default_only_where_the_cpu_has_it_natively(monkeypatch, flags, native):
    monkeypatch.setattr(device_module, "cpu_flags", lambda: flags)
    assert device_module.native_bf16(CPU) is native
    assert device_module.default_bf16(CPU, 1024) is native
    assert device_module.default_bf16(CPU, 256) is False  # too narrow to gain: float32
    assert set(device_module.cpu_vector_extensions()) <= flags


def test_doctor_names_the_training_precision(monkeypatch):
    from fastbfm import doctor

    monkeypatch.setattr(device_module, "cpu_flags", lambda: {"avx2", "fma"})
    (row,) = [r for r in doctor.checks(render=False) if r["check"] == "CPU training precision"]
    assert "no native bf16" in row["found"] and "float32" in row["found"]
    monkeypatch.setattr(device_module, "cpu_flags", lambda: {"avx2", "avx512_bf16"})
    (row,) = [r for r in doctor.checks(render=False) if r["check"] == "CPU training precision"]
    assert row["found"].startswith("native bf16") and "avx512_bf16" in row["found"] and "512" in row["found"]


def test_a_network_at_bf16_returns_float32_close_to_its_float32_output():
    torch.manual_seed(0)
    net = TwoStreamNet(6, 2, 8, 64, 8, ensemble_size=2)
    obs, action, z = torch.randn(32, 6), torch.rand(32, 2) * 2 - 1, torch.randn(32, 8)
    exact = net(obs, action, z)
    set_compute_dtype(net, torch.bfloat16)
    low = net(obs, action, z)
    assert net.compute_dtype is torch.bfloat16 and net.embed_x.compute_dtype is None  # nested nets run in the outer region
    assert low.dtype is torch.float32 and not torch.equal(low, exact)
    torch.testing.assert_close(low, exact, rtol=0.05, atol=0.05)
    set_compute_dtype(net, None)
    assert torch.equal(net(obs, action, z), exact)  # float32 again, bit for bit


def test_a_plain_mlp_is_unchanged_in_float32():
    torch.manual_seed(0)
    net = mlp(5, [16, 16], 3, ensemble_size=1)
    x = torch.randn(1, 10, 5)
    expected = x
    for layer in net:
        expected = layer(expected)
    assert torch.equal(net(x), expected)


def _data(n=256, obs_dim=4, action_dim=2):
    g = torch.Generator().manual_seed(0)
    obs = torch.randn(n, obs_dim, generator=g)
    ends = (torch.arange(n) // 32 + 1) * 32
    return TorchTransitions(obs, torch.rand(n, action_dim, generator=g) * 2 - 1, obs.roll(-1, 0), torch.ones(n), ends)


def _trainer(algorithm, bf16):
    model_config, train_config = preset(algorithm, "cpu", 4, 2, batch_size=64)
    model_config = type(model_config)(**{**model_config.__dict__, "z_dim": 8, "hidden_dim": 64})
    algo = get_algorithm(algorithm)
    torch.manual_seed(0)
    trainer = algo.trainer(algo.model(model_config), train_config, torch.Generator().manual_seed(0))
    set_training_precision(trainer, bf16)
    return trainer


@pytest.mark.parametrize("algorithm", ["fb", "hilp", "psm"])
def test_bf16_updates_keep_float32_weights_optimiser_state_and_losses(monkeypatch, algorithm):
    seen = []
    for name in ("fb_loss", "orthonormality_loss", "successor_feature_loss", "hilbert_value_loss"):
        original = getattr(losses, name)

        def recording(*args, _original=original, **kwargs):
            seen.extend(a.dtype for a in args if torch.is_tensor(a) and a.is_floating_point())
            return _original(*args, **kwargs)

        module = {"fb": "fastbfm.bfm.fb", "hilp": "fastbfm.bfm.hilp", "psm": "fastbfm.bfm.psm"}[algorithm]
        for target in (module, "fastbfm.bfm.sf"):
            if hasattr(__import__(target, fromlist=[name]), name):
                monkeypatch.setattr(f"{target}.{name}", recording)
    low, exact = _trainer(algorithm, bf16=True), _trainer(algorithm, bf16=False)
    data = _data()
    sums_low, sums_exact = MetricSums(CPU), MetricSums(CPU)
    for _ in range(5):
        eager_step(low, data, sums_low)()
        eager_step(exact, data, sums_exact)()
    assert seen and all(dtype is torch.float32 for dtype in seen)
    _, first_bad, metrics = sums_low.read()
    assert first_bad == 0 and all(torch.isfinite(torch.tensor(v)) for v in metrics.values())
    for opt in low.optimizers().values():
        for group in opt.param_groups:
            for p in group["params"]:
                assert p.dtype is torch.float32 and all(v.dtype is torch.float32 for v in opt.state[p].values() if v.dim())
    # same batches and latents: the bf16 run follows the float32 one closely, not exactly
    changed = False
    for (name, a), (_, b) in zip(low.model.state_dict().items(), exact.model.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=0.05, atol=0.02, msg=name)
        changed |= not torch.equal(a, b)
    assert changed


def test_the_precision_of_each_stretch_of_a_run_is_in_its_history(maze_dataset_dir, tmp_path, tiny_preset):
    from fastbfm.bfm.train import pretrain
    from fastbfm.models import load_model

    run = dict(checkpoint_every=10, threads=1, progress=False, device="cpu")
    pretrain(maze_dataset_dir, tmp_path / "run", "tiny", num_updates=10, bf16=True, **run)
    pretrain(maze_dataset_dir, tmp_path / "run", "tiny", num_updates=20, bf16=False, **run)
    pretrain(maze_dataset_dir, tmp_path / "run", "tiny", num_updates=25, **run)  # default at width 32: float32
    model = load_model(tmp_path / "run")
    assert [(h["from_step"], h["precision"]) for h in model.meta["history"]] == [(0, "bf16"), (10, "fp32")]
    assert model.meta["updates"] == 25 and all(torch.isfinite(p).all() for p in model.state_dict().values())
