import json

import numpy as np
import pytest
import torch

from fastbfm.bfm.checkpoint import load_model, save_model
from fastbfm.bfm.fb import FBModel, FBModelConfig, FBTrainConfig, FBTrainer
from fastbfm.bfm.protocol import BFM
from fastbfm.bfm.train import pretrain
from fastbfm.errors import FastBFMError

SMALL = FBModelConfig(obs_dim=4, action_dim=2, z_dim=8, hidden_dim=32, backward_hidden_dim=32)


def _model(seed=0):
    torch.manual_seed(seed)
    return FBModel(SMALL)


def test_shapes_and_protocol():
    model = _model()
    assert isinstance(model, BFM)
    obs, z = torch.randn(5, 4), model.sample_z(5)
    assert model.act(obs, z).shape == (5, 2)
    assert model.act(obs, z).abs().max() <= 1
    assert model.features(obs).shape == (5, 8)
    assert model.successor_features(obs, torch.zeros(5, 2), z).shape == (2, 5, 8)
    assert model.q_value(obs, torch.zeros(5, 2), z, z).shape == (5,)
    torch.testing.assert_close(z.norm(dim=-1), torch.full((5,), 8**0.5))
    assert model.infer_from_goal(obs[0]).shape == (8,)


def test_initialisation_is_orthogonal_per_member_with_zero_biases():
    from fastbfm.bfm.nn import EnsembleLinear

    model = _model()
    for net, gain in ((model.forward_map, 2**0.5), (model.backward_map, 1.0), (model.actor, 1.0)):
        layers = [m for m in net.modules() if isinstance(m, EnsembleLinear)]
        assert layers
        for layer in layers:
            assert torch.equal(layer.bias, torch.zeros_like(layer.bias))
            for w in layer.weight:  # (in, out): orthonormal columns or rows, times the gain
                small = w.T @ w if w.shape[0] >= w.shape[1] else w @ w.T
                torch.testing.assert_close(small, gain**2 * torch.eye(small.shape[0]), atol=1e-5, rtol=0)
    a, b = model.forward_map.embed_x[0].weight  # the two ensemble members differ
    assert not torch.allclose(a, b)


def test_noisy_actions_are_clamped_but_pass_the_gradient_through():
    model = _model()
    obs, z = torch.randn(64, 4), model.sample_z(64)
    model.actor.requires_grad_(True)

    def actor_gradient(action):
        model.actor.zero_grad(set_to_none=True)
        action.sum().backward()
        return torch.cat([p.grad.flatten() for p in model.actor.parameters()])

    noisy = model.act(obs, z, mean=False, noise=100.0, clip=100.0)  # nearly every sample past a bound
    assert noisy.abs().max() <= 1 and (noisy.abs() == 1).float().mean() > 0.9
    # the noise is a constant shift: the same gradient as the mean action's, clamped or not
    torch.testing.assert_close(actor_gradient(noisy), actor_gradient(model.act(obs, z)))


def test_reward_inference_is_invariant_to_positive_scaling_and_rejects_zero_rewards():
    model = _model()
    obs, r = torch.randn(100, 4), torch.rand(100)
    torch.testing.assert_close(model.infer_from_rewards(obs, r), model.infer_from_rewards(obs, 7.5 * r))
    with pytest.raises(FastBFMError, match="all zero"):
        model.infer_from_rewards(obs, torch.zeros(100))


def test_trainer_updates_are_finite_and_change_the_model():
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = FBTrainer(model, FBTrainConfig(batch_size=16), torch.Generator().manual_seed(0))
    batch = {"obs": torch.randn(16, 4), "action": torch.rand(16, 2) * 2 - 1, "next_obs": torch.randn(16, 4), "discount": torch.ones(16)}
    for _ in range(3):
        metrics = trainer.update(batch)
    assert all(torch.isfinite(v) for v in metrics.values())
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert any(k.startswith("forward_map") for k in changed)
    assert any(k.startswith("backward_map") for k in changed)
    assert any(k.startswith("actor") for k in changed)


def test_checkpoint_roundtrip_and_corruption(tmp_path):
    model = _model()
    save_model(model, tmp_path / "ckpt", meta={"domain": "point_mass_maze"})
    loaded = load_model(tmp_path / "ckpt")
    obs, z = torch.randn(3, 4), model.sample_z(3)
    torch.testing.assert_close(loaded.act(obs, z), model.act(obs, z))
    assert loaded.meta["domain"] == "point_mass_maze"

    weights = tmp_path / "ckpt" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(FastBFMError, match="corrupt checkpoint"):
        load_model(tmp_path / "ckpt")
    (tmp_path / "ckpt" / "config.json").write_text("{not json")
    with pytest.raises(FastBFMError, match="corrupt checkpoint config"):
        load_model(tmp_path / "ckpt")
    with pytest.raises(FastBFMError, match="not found"):
        load_model(tmp_path / "missing")


@pytest.mark.parametrize("weights, size_ratio, rel_error", [("float16", 0.55, 1e-3), ("int8", 0.3, 1 / 127)])
def test_compact_weight_storage_round_trips_within_its_precision(tmp_path, weights, size_ratio, rel_error):
    dtype = getattr(torch, weights)
    model = FBModel(FBModelConfig(obs_dim=4, action_dim=2, z_dim=8, hidden_dim=256, backward_hidden_dim=64))
    model.set_normalization(torch.randn(4), torch.rand(4) + 0.5)
    save_model(model, tmp_path / "full")
    save_model(model, tmp_path / weights, dtype=dtype)
    full, compact = (tmp_path / d / "model.safetensors" for d in ("full", weights))
    assert compact.stat().st_size < size_ratio * full.stat().st_size
    loaded = load_model(tmp_path / weights)
    assert json.loads((tmp_path / weights / "config.json").read_text())["weights"] == weights
    rounded = 0
    for name, w in model.state_dict().items():
        got = loaded.state_dict()[name]
        assert got.dtype == w.dtype
        if w.dim() < 2 and weights == "int8":
            assert torch.equal(got, w)  # int8 keeps biases and the input normalisation exact
        elif w.dim() >= 2:
            row_max = w.abs().amax(-1, keepdim=True)
            assert ((got - w).abs() <= rel_error * row_max + 1e-7).all()
            rounded += not torch.equal(got, w)
    assert rounded > 0
    obs, z = torch.randn(16, 4), model.sample_z(16)
    torch.testing.assert_close(loaded.act(obs, z), model.act(obs, z), atol=0.05, rtol=0)


def test_unknown_weight_storage_is_refused(tmp_path):
    with pytest.raises(FastBFMError, match="unknown weight storage"):
        save_model(_model(), tmp_path / "ckpt", dtype=torch.bfloat16)
    assert not (tmp_path / "ckpt" / "config.json").exists()
    save_model(_model(), tmp_path / "ckpt", dtype=torch.int8)
    config_path = tmp_path / "ckpt" / "config.json"
    config = json.loads(config_path.read_text())
    config["weights"] = "int4"
    config_path.write_text(json.dumps(config))
    with pytest.raises(FastBFMError, match="unknown weight storage"):
        load_model(tmp_path / "ckpt")


def test_checkpoint_with_wrong_shapes_is_rejected(tmp_path):
    save_model(_model(), tmp_path / "ckpt")
    config_path = tmp_path / "ckpt" / "config.json"
    config = json.loads(config_path.read_text())
    config["model"]["hidden_dim"] = 64
    config_path.write_text(json.dumps(config))
    with pytest.raises(FastBFMError, match="do not match"):
        load_model(tmp_path / "ckpt")


def test_resume_is_exact(maze_dataset_dir, tmp_path, monkeypatch):
    monkeypatch.setitem(
        __import__("fastbfm.bfm.fb", fromlist=["PRESETS"]).PRESETS,
        "tiny",
        (dict(z_dim=8, hidden_dim=32, backward_hidden_dim=32), FBTrainConfig(batch_size=32, num_updates=40)),
    )
    pretrain(maze_dataset_dir, tmp_path / "straight", "tiny", num_updates=40, checkpoint_every=20, threads=1, progress=False)
    pretrain(maze_dataset_dir, tmp_path / "resumed", "tiny", num_updates=20, checkpoint_every=20, threads=1, progress=False)
    pretrain(maze_dataset_dir, tmp_path / "resumed", "tiny", num_updates=40, checkpoint_every=20, threads=1, progress=False)
    a, b = load_model(tmp_path / "straight"), load_model(tmp_path / "resumed")
    assert b.meta["updates"] == 40
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(va, vb, rtol=0, atol=0, msg=k)
    lines = (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()
    assert all(np.isfinite(v) for line in lines for v in json.loads(line).values())


def test_divergence_stops_training_and_keeps_the_last_checkpoint(maze_dataset_dir, tmp_path, monkeypatch):
    from fastbfm.bfm import fb

    monkeypatch.setitem(fb.PRESETS, "tiny", (dict(z_dim=8, hidden_dim=32, backward_hidden_dim=32), FBTrainConfig(batch_size=32)))
    pretrain(maze_dataset_dir, tmp_path / "run", "tiny", num_updates=10, checkpoint_every=10, threads=1, progress=False)
    good = (tmp_path / "run" / "model.safetensors").read_bytes()
    original_update = FBTrainer.update

    def diverging_update(self, batch):
        metrics = original_update(self, batch)
        return {**metrics, "fb_loss": torch.tensor(float("nan"))}

    monkeypatch.setattr(FBTrainer, "update", diverging_update)
    with pytest.raises(FastBFMError, match=r"diverged at update 11: non-finite fb_loss; the last good checkpoint in .* \(update 10\) is kept"):
        pretrain(maze_dataset_dir, tmp_path / "run", "tiny", num_updates=20, checkpoint_every=1, threads=1, progress=False)
    assert (tmp_path / "run" / "model.safetensors").read_bytes() == good
    assert load_model(tmp_path / "run").meta["updates"] == 10
    # diverging at its first update, a run has no checkpoint to claim (before: "the last good checkpoint is kept")
    with pytest.raises(FastBFMError, match=r"diverged at update 1: .*; no checkpoint was written \(the first is due at update 5\)"):
        pretrain(maze_dataset_dir, tmp_path / "fresh", "tiny", num_updates=20, checkpoint_every=5, threads=1, progress=False)
    assert not (tmp_path / "fresh" / "model.safetensors").exists()
