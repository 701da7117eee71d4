"""HILP and PSM: losses on tiny tensors, the successor-feature model's protocol, trainers, presets, resume."""

import json

import numpy as np
import pytest
import torch

from fastbfm.bfm.algorithms import ALGORITHMS, get_algorithm, preset
from fastbfm.bfm.checkpoint import load_model, save_model
from fastbfm.bfm.hilp import HILPTrainConfig, HILPTrainer, hilbert_value
from fastbfm.bfm.losses import hilbert_value_loss, successor_feature_loss
from fastbfm.bfm.protocol import BFM
from fastbfm.bfm.psm import Codebook, PSMTrainConfig, PSMTrainer
from fastbfm.bfm.sf import SFModel, SFModelConfig
from fastbfm.bfm.train import pretrain
from fastbfm.data.dataset import load_dataset
from fastbfm.errors import FastBFMError

TRAINERS = {"hilp": (HILPTrainer, HILPTrainConfig), "psm": (PSMTrainer, PSMTrainConfig)}


def _model(algorithm, seed=0):
    torch.manual_seed(seed)
    return SFModel(SFModelConfig(algorithm, obs_dim=4, action_dim=2, z_dim=8, hidden_dim=32, feature_hidden_dim=32))


def _batch(n=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(n, 4, generator=g)
    goal = torch.randn(n, 4, generator=g)
    goal[:3] = obs[:3]  # some goals reached
    return {"obs": obs, "action": torch.rand(n, 2, generator=g) * 2 - 1, "next_obs": torch.randn(n, 4, generator=g), "discount": torch.ones(n), "goal": goal}


def test_successor_feature_loss_bootstraps_from_the_pessimistic_head():
    z = torch.tensor([[1.0, 0.0]])
    target_psi = torch.tensor([[[2.0, 5.0]], [[1.0, -3.0]]])  # values 2 and 1: head 1 is picked
    features = torch.tensor([[0.5, 0.5]])
    psi = torch.zeros(2, 1, 2, requires_grad=True)
    loss, _ = successor_feature_loss(psi, target_psi, features, torch.tensor([0.5]), z)
    target = features + 0.5 * target_psi[1]
    torch.testing.assert_close(loss, 2 * target.pow(2).sum())
    loss.backward()
    torch.testing.assert_close(psi.grad, -2 * target.expand(2, 1, 2) / 1)
    q_loss, _ = successor_feature_loss(psi, target_psi, features, torch.tensor([0.5]), z, q_loss=True)
    torch.testing.assert_close(q_loss, 2 * (target * z).sum().pow(2))


def test_hilbert_value_loss_is_zero_at_its_fixed_point_and_ends_at_the_goal():
    # V(s, g) = -1 + gamma V(s', g) exactly, and V = 0 where s = g: no loss, whatever the expectile.
    gamma = 0.9
    next_value = torch.tensor([[-2.0, 0.0]]).expand(2, 2)
    value = torch.tensor([[-1 + gamma * -2.0, 0.0]]).expand(2, 2)
    reached = torch.tensor([False, True])
    for expectile in (0.5, 0.9):
        loss, _ = hilbert_value_loss(value, next_value, value, reached, gamma, expectile)
        assert loss.item() == pytest.approx(0.0, abs=1e-12)
    # under-estimates weigh 'expectile', over-estimates 1 - expectile
    low, _ = hilbert_value_loss(value - 1, next_value, value, reached, gamma, 0.9)
    high, _ = hilbert_value_loss(value + 1, next_value, value - 2, reached, gamma, 0.9)
    assert low.item() > 0 and high.item() > 0
    assert hilbert_value(torch.zeros(3, 2), torch.zeros(3, 2)).abs().max() < 1e-2


@pytest.mark.parametrize("algorithm", ["hilp", "psm"])
def test_protocol_shapes_and_linear_reward_inference(algorithm):
    model = _model(algorithm)
    assert isinstance(model, BFM)
    obs, z = torch.randn(200, 4), model.sample_z(5)
    assert model.act(obs[:5], z).shape == (5, 2)
    assert model.features(obs).shape == (200, 8)
    assert model.successor_features(obs[:5], torch.zeros(5, 2), z).shape == (2, 5, 8)
    assert model.q_value(obs[:5], torch.zeros(5, 2), z, z).shape == (5,)
    assert model.infer_from_goal(obs[0]).shape == (8,) and model.infer_from_goal(obs[:3]).shape == (3, 8)
    # a reward that is exactly linear in the features is recovered by the regression
    w = torch.randn(8)
    rewards = model.features(obs) @ w
    torch.testing.assert_close(model.reward_embedding(obs, rewards), w, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(model.infer_from_rewards(obs, 3 * rewards), model.project(w), rtol=1e-4, atol=1e-4)
    with pytest.raises(FastBFMError, match="all zero"):
        model.infer_from_rewards(obs, torch.zeros(200))
    if algorithm == "psm":
        torch.testing.assert_close(model.raw_features(obs).norm(dim=-1), torch.full((200,), 8**0.5))


@pytest.mark.parametrize("algorithm", ["hilp", "psm"])
def test_trainer_updates_are_finite_and_train_every_network(algorithm):
    model = _model(algorithm)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer_cls, config_cls = TRAINERS[algorithm]
    trainer = trainer_cls(model, config_cls(batch_size=16), torch.Generator().manual_seed(0))
    for i in range(3):
        metrics = trainer.update(_batch(seed=i))
    assert all(torch.isfinite(v) for v in metrics.values())
    changed = {k.split(".")[0] for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert {"feature_map", "successor_map", "actor", "feature_cov"} <= changed
    assert ("feature_mean" in changed) == (algorithm == "hilp")


def test_codebook_policies_are_deterministic_bounded_and_differ_by_code():
    g = torch.Generator().manual_seed(0)
    codebook = Codebook(4, 2, PSMTrainConfig(), g)
    obs = torch.randn(64, 4, generator=g)
    codes = codebook.sample_codes(64, g)
    assert set(codes.unique().tolist()) == {-1.0, 1.0}
    a = codebook.act(obs, codes)
    assert a.abs().max() <= 1 and torch.equal(a, codebook.act(obs, codes))
    assert (a - codebook.act(obs, -codes)).abs().mean() > 0.1  # code -c is the mirrored policy
    assert a.std(0).min() > 0.1  # the actions vary across states and codes


def test_future_goals_stay_in_their_episode(maze_dataset_dir):
    data = load_dataset(maze_dataset_dir).to_torch()
    g = torch.Generator().manual_seed(0)
    batch = data.sample_with_goals(512, g, future_discount=0.99, random_goal_prob=0.0)
    # each goal is a next state of the same episode at or after the sampled one
    same_episode = [(batch["goal"][i] == data.next_obs).all(-1).nonzero()[:, 0] for i in range(64)]
    start = [(batch["next_obs"][i] == data.next_obs).all(-1).nonzero()[0, 0] for i in range(64)]
    for hits, s in zip(same_episode, start):
        assert ((hits >= s) & (hits < data.episode_end[s])).any()


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
def test_presets_build_and_paper_runs_updates(algorithm):
    for name in ("cpu", "paper"):
        model_config, train_config = preset(algorithm, name, 4, 2)
        assert train_config.num_updates >= 100_000
    model_config, train_config = preset(algorithm, "paper", 4, 2)
    algo = get_algorithm(algorithm)
    torch.manual_seed(0)
    trainer = algo.trainer(algo.model(model_config), train_config, torch.Generator().manual_seed(0))
    n = train_config.batch_size
    batch = _batch(n)
    metrics = [trainer.update(batch) for _ in range(2)]
    assert all(torch.isfinite(v) for m in metrics for v in m.values())
    with pytest.raises(FastBFMError, match="unknown preset"):
        preset(algorithm, "huge", 4, 2)
    with pytest.raises(FastBFMError, match="no training option"):
        preset(algorithm, "cpu", 4, 2, not_an_option=1)
    with pytest.raises(FastBFMError, match="unknown algorithm"):
        get_algorithm("sac")


@pytest.mark.parametrize("algorithm", ["hilp", "psm"])
def test_checkpoint_roundtrip(algorithm, tmp_path):
    model = _model(algorithm)
    model.feature_mean.fill_(0.25)
    save_model(model, tmp_path / "ckpt")
    loaded = load_model(tmp_path / "ckpt")
    assert type(loaded) is SFModel and loaded.algorithm == algorithm
    obs, z = torch.randn(3, 4), model.sample_z(3)
    torch.testing.assert_close(loaded.act(obs, z), model.act(obs, z))
    torch.testing.assert_close(loaded.features(obs), model.features(obs))
    config = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert config["algorithm"] == algorithm and config["model"]["algorithm"] == algorithm


@pytest.mark.parametrize("algorithm", ["hilp", "psm"])
def test_resume_is_exact(algorithm, maze_dataset_dir, tmp_path, monkeypatch):
    algo = get_algorithm(algorithm)
    tiny = (dict(z_dim=8, hidden_dim=32, feature_hidden_dim=32), algo.presets["cpu"][1].__class__(batch_size=32))
    monkeypatch.setitem(algo.presets, "tiny", tiny)
    run = dict(algorithm=algorithm, checkpoint_every=10, threads=1, progress=False)
    pretrain(maze_dataset_dir, tmp_path / "straight", "tiny", num_updates=20, **run)
    pretrain(maze_dataset_dir, tmp_path / "resumed", "tiny", num_updates=10, **run)
    pretrain(maze_dataset_dir, tmp_path / "resumed", "tiny", num_updates=20, **run)
    a, b = load_model(tmp_path / "straight"), load_model(tmp_path / "resumed")
    assert b.meta["updates"] == 20 and b.meta["algorithm"] == algorithm
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(va, vb, rtol=0, atol=0, msg=k)
    lines = (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()
    assert all(np.isfinite(v) for line in lines for v in json.loads(line).values())
