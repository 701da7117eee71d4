import json
import math
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch.nn.functional import layer_norm, normalize

from fastbfm.adapt.lola import LoLAConfig, lola_seeds
from fastbfm.adapt.zero_shot import TaskPrompt
from fastbfm.bfm.protocol import BFM
from fastbfm.envs import get_task
from fastbfm.errors import FastBFMError
from fastbfm.gym import LatentPolicy
from fastbfm.interop.metamotivo import MetaMotivoFB, load_metamotivo
from tests.metamotivo_fixture import write_random_checkpoint

OBS, ACT, Z = 24, 6, 16  # walker's observation and action sizes


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_random_checkpoint(
        tmp_path_factory.mktemp("mm") / "fb", OBS, ACT, Z, hidden_dim=64, backward_hidden_dim=32
    )


@pytest.fixture(scope="module")
def model(folder):
    return load_metamotivo(folder, discount=0.98)


def _batch(n=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, OBS, generator=g), torch.rand(n, ACT, generator=g) * 2 - 1


def test_keys_and_shapes_follow_metamotivo_layout(folder):
    # Meta Motivo's names for this config: Sequential indices skip the parameter-free Tanh/ReLU layers,
    # ensembles (num_parallel 2) hold (K, in, out) weights, single nets nn.Linear's (out, in).
    expected = {
        "_obs_normalizer.running_mean": (OBS,),
        "_obs_normalizer.running_var": (OBS,),
        "_obs_normalizer.num_batches_tracked": (),
        "_backward_map.net.0.weight": (32, OBS),
        "_backward_map.net.1.weight": (32,),
        "_backward_map.net.3.weight": (32, 32),
        "_backward_map.net.5.weight": (Z, 32),
        "_backward_map.net.5.bias": (Z,),
        "_forward_map.embed_z.0.weight": (2, OBS + Z, 64),
        "_forward_map.embed_z.0.bias": (2, 1, 64),
        "_forward_map.embed_z.1.weight": (2, 1, 64),
        "_forward_map.embed_z.3.weight": (2, 64, 32),
        "_forward_map.embed_sa.0.weight": (2, OBS + ACT, 64),
        "_forward_map.embed_sa.3.bias": (2, 1, 32),
        "_forward_map.Fs.0.weight": (2, 64, 64),
        "_forward_map.Fs.2.weight": (2, 64, Z),
        "_actor.embed_z.0.weight": (64, OBS + Z),
        "_actor.embed_z.1.bias": (64,),
        "_actor.embed_s.0.weight": (64, OBS),
        "_actor.embed_s.3.weight": (32, 64),
        "_actor.policy.0.weight": (64, 64),
        "_actor.policy.2.weight": (ACT, 64),
    }
    tensors = load_file(folder / "model.safetensors")
    # normaliser 3, backward 4 layers x 2, forward and actor 2 x 3 + 2 layers x 2 each
    assert len(tensors) == 3 + 8 + 16 + 16
    for key, shape in expected.items():
        assert tuple(tensors[key].shape) == shape, key
    config = json.loads((folder / "config.json").read_text())
    assert {
        "obs_dim",
        "action_dim",
        "archi",
        "norm_obs",
        "actor_std",
        "seq_length",
        "inference_batch_size",
    } <= config.keys()
    assert {"z_dim", "norm_z", "f", "b", "actor"} <= config["archi"].keys()
    assert config["archi"]["f"]["num_parallel"] == 2 and config["archi"]["f"]["model"] == "simple"


def test_networks_match_a_hand_computed_forward_pass(folder, model):
    t = load_file(folder / "model.safetensors")
    obs, action = _batch()
    z = model.sample_z(5, torch.Generator().manual_seed(1))
    x = (obs - t["_obs_normalizer.running_mean"]) / torch.sqrt(t["_obs_normalizer.running_var"] + 1e-5)

    def ln(h, p, k=None):
        w, b = (t[p + ".weight"], t[p + ".bias"]) if k is None else (t[p + ".weight"][k], t[p + ".bias"][k])
        return layer_norm(h, h.shape[-1:]) * w + b

    def lin(h, p, k=None):  # nn.Linear's (out, in) for single nets, (in, out) per ensemble member
        return h @ t[p + ".weight"].T + t[p + ".bias"] if k is None else h @ t[p + ".weight"][k] + t[p + ".bias"][k]

    h = torch.tanh(ln(lin(x, "_backward_map.net.0"), "_backward_map.net.1"))
    b = lin(torch.relu(lin(h, "_backward_map.net.3")), "_backward_map.net.5")
    torch.testing.assert_close(model.features(obs), math.sqrt(Z) * normalize(b, dim=-1))

    def embed(inp, p, k=None):
        return torch.relu(lin(torch.tanh(ln(lin(inp, p + ".0", k), p + ".1", k)), p + ".3", k))

    e = torch.cat([embed(x, "_actor.embed_s"), embed(torch.cat([x, z], -1), "_actor.embed_z")], -1)
    mu = torch.tanh(lin(torch.relu(lin(e, "_actor.policy.0")), "_actor.policy.2"))
    torch.testing.assert_close(model.act(obs, z), mu)

    for k in range(2):
        e = torch.cat(
            [
                embed(torch.cat([x, action], -1), "_forward_map.embed_sa", k),
                embed(torch.cat([x, z], -1), "_forward_map.embed_z", k),
            ],
            -1,
        )
        f = lin(torch.relu(lin(e, "_forward_map.Fs.0", k)), "_forward_map.Fs.2", k)
        torch.testing.assert_close(model.successor_features(obs, action, z)[k], f)


def test_protocol_shapes_and_latent_norms(model):
    obs, action = _batch(7)
    z = model.sample_z(7, torch.Generator().manual_seed(0))
    assert isinstance(model, BFM) and not model.training
    assert (
        model.algorithm == "metamotivo-fb" and model.meta["source"] == "metamotivo" and model.meta["model_type"] == "fb"
    )
    assert (model.obs_dim, model.action_dim, model.z_dim) == (OBS, ACT, Z)
    assert not any(p.requires_grad for p in model.parameters())
    assert model.act(obs, z).shape == (7, ACT)
    noisy = model.act(obs, z, mean=False, generator=torch.Generator().manual_seed(3))
    assert noisy.shape == (7, ACT) and noisy.abs().max() <= 1
    torch.testing.assert_close(noisy, model.act(obs, z, mean=False, generator=torch.Generator().manual_seed(3)))
    assert model.features(obs).shape == (7, Z)
    assert model.successor_features(obs, action, z).shape == (2, 7, Z)
    q = model.q_value(obs, action, z, z)
    assert q.shape == (7,)
    psi_q = (model.successor_features(obs, action, z) * z).sum(-1)
    torch.testing.assert_close(model.q_value(obs, action, z, z, pessimism=0.5), psi_q.min(0).values)
    rewards = torch.rand(7)
    assert model.reward_embedding(obs, rewards).shape == (Z,)
    sqrt_d = torch.tensor(math.sqrt(Z))
    for latent in (
        z,
        model.infer_from_rewards(obs, rewards),
        model.infer_from_rewards_weighted(obs, rewards),
        model.infer_from_goal(obs[0]),
        model.infer_from_goal(obs),
        model.project(torch.randn(3, Z) * 50),
    ):
        torch.testing.assert_close(latent.norm(dim=-1), sqrt_d.expand(latent.shape[:-1]))
    assert model.infer_from_goal(obs[0]).shape == (Z,) and model.infer_from_goal(obs).shape == (7, Z)
    policy = LatentPolicy(model, z[0])  # the numpy-in, numpy-out policy docs/metamotivo.md uses with humenv
    assert policy(obs[0].numpy()).shape == (ACT,) and policy(obs.numpy()).shape == (7, ACT)


def test_reward_inference_is_invariant_to_positive_scaling(model):
    obs, _ = _batch(50, seed=4)
    rewards = torch.rand(50)
    z = model.infer_from_rewards(obs, rewards)
    torch.testing.assert_close(model.infer_from_rewards(obs, 37.5 * rewards), z)
    torch.testing.assert_close(model.reward_embedding(obs, 2 * rewards), 2 * model.reward_embedding(obs, rewards))
    with pytest.raises(FastBFMError, match="all zero"):
        model.infer_from_rewards(obs, torch.zeros(50))


@pytest.mark.parametrize(
    "options",
    [
        {"archi": "residual", "hidden_layers": 2, "embedding_layers": 3},
        {"ensemble_mode": "seq", "norm_obs": False},
        {"fb_cpr": True, "agent_layout": True, "num_parallel": 3},
    ],
    ids=["residual", "seq-ensemble", "fb-cpr-agent-save"],
)
def test_variants_load_and_round_trip(tmp_path, options):
    folder = write_random_checkpoint(tmp_path / "ckpt", OBS, ACT, Z, hidden_dim=32, backward_hidden_dim=16, **options)
    model = load_metamotivo(folder)
    obs, action = _batch()
    z = model.sample_z(5)
    k = options.get("num_parallel", 2)
    assert model.successor_features(obs, action, z).shape == (k, 5, Z)
    assert model.act(obs, z).shape == (5, ACT)
    weights = folder / "model" / "model.safetensors" if options.get("agent_layout") else folder / "model.safetensors"
    used = {k: v for k, v in load_file(weights).items() if not k.startswith(("_critic", "_discriminator", "_target_"))}
    assert model.state_dict().keys() == used.keys()
    if options.get("archi") == "residual":
        assert "_forward_map.embed_z.1.mlp.1.weight" in used and "_actor.policy.2.mlp.1.weight" in used
    if options.get("ensemble_mode") == "seq":
        assert "_forward_map.models.1.Fs.2.weight" in used and "_obs_normalizer.running_mean" not in used
    if options.get("fb_cpr"):
        assert model.meta["model_type"] == "fb-cpr"
        assert model.meta["ignored"] == [
            "_critic",
            "_discriminator",
            "_target_backward_map",
            "_target_critic",
            "_target_forward_map",
        ]
        assert model.meta["train"]["discount"] == 0.98
        assert load_metamotivo(folder, discount=0.98).discount == 0.98
        with pytest.raises(FastBFMError, match="trained with discount 0.98, not 0.9"):  # as fastbfm checkpoints: the record wins
            load_metamotivo(folder, discount=0.9)


def _edit_config(folder, edit):
    path = folder / "config.json"
    config = json.loads(path.read_text())
    edit(config)
    path.write_text(json.dumps(config))


def _expect_error(folder, match):
    with pytest.raises(FastBFMError, match=match) as info:
        load_metamotivo(folder)
    assert "\n" not in str(info.value)


def test_missing_corrupt_and_mismatched_checkpoints_raise_clear_errors(tmp_path):
    _expect_error(tmp_path / "absent", "no Meta Motivo checkpoint folder")
    (tmp_path / "empty").mkdir()
    _expect_error(tmp_path / "empty", "no model.safetensors")

    def fresh(name, **kw):
        return write_random_checkpoint(tmp_path / name, OBS, ACT, Z, hidden_dim=32, backward_hidden_dim=16, **kw)

    f = fresh("no_config")
    (f / "config.json").unlink()
    _expect_error(f, "no config.json")
    f = fresh("bad_json")
    (f / "config.json").write_text("{not json")
    _expect_error(f, "not valid JSON")
    f = fresh("garbage")
    (f / "model.safetensors").write_bytes(b"definitely not safetensors")
    _expect_error(f, "not a valid safetensors file")
    f = fresh("truncated")
    data = (f / "model.safetensors").read_bytes()
    (f / "model.safetensors").write_bytes(data[: len(data) // 2])
    _expect_error(f, "not a valid safetensors file")
    f = fresh("archi")
    _edit_config(f, lambda c: c["archi"]["f"].update(model="transformer"))
    _expect_error(f, "unsupported Meta Motivo archi.f.model 'transformer'")
    f = fresh("vmap")
    _edit_config(f, lambda c: c["archi"]["f"].update(ensemble_mode="vmap"))
    _expect_error(f, "unsupported Meta Motivo archi.f.ensemble_mode 'vmap'")
    f = fresh("other_type")
    (f / "config.json").write_text(json.dumps({"obs_space": {}, "name": "tdjepa"}))
    _expect_error(f, "unsupported model type")
    f = fresh("shape")
    _edit_config(f, lambda c: c["archi"].update(z_dim=8))
    _expect_error(
        f, r"shape mismatch in .*'_backward_map.net.5.weight' is \(16, 16\) but config.json implies \(8, 16\)"
    )
    f = fresh("layers")
    _edit_config(f, lambda c: c["archi"]["b"].update(hidden_layers=1))
    _expect_error(f, "has 2 weight.s. that config.json does not explain, e.g. '_backward_map.net.5.bias'")
    f = fresh("no_norm")
    _edit_config(f, lambda c: c.update(norm_obs=False))
    _expect_error(f, "has 3 weight.s. that config.json does not explain, e.g. '_obs_normalizer.num_batches_tracked'")
    f = fresh("agent", agent_layout=True)
    (f / "model" / "model.safetensors").unlink()
    _expect_error(f, "no model.safetensors")
    with pytest.raises(FastBFMError, match="discount must be in"):
        load_metamotivo(fresh("discount"), discount=1.5)
    with pytest.raises(FastBFMError, match="unsupported model type"):
        MetaMotivoFB({"obs_dim": OBS})


def test_a_published_folder_records_no_discount_and_adaptation_says_so(folder):
    """Meta Motivo's configs carry no discount: a model loaded without one has none, and a method that
    bootstraps with it refuses it on one line (a silent 0.99 would mis-scale LoLA's critic bootstrap)."""
    bare = load_metamotivo(folder)
    assert bare.discount is None and "train" not in bare.meta
    assert load_metamotivo(folder, discount=0.98).discount == 0.98
    z = bare.sample_z(1, torch.Generator().manual_seed(0))[0]
    prompt = TaskPrompt(z=z, w=z, num_samples=0, num_rewarded=0)
    with pytest.raises(FastBFMError, match="records no training discount.*--discount"):
        lola_seeds(bare, get_task("walker:stand"), prompt, LoLAConfig(episodes=1, num_candidates=2, horizon=20, eval_episodes=1, safe=None), [0])


def test_lola_runs_on_a_metamotivo_model(model):
    z = model.sample_z(1, torch.Generator().manual_seed(0))[0]
    prompt = TaskPrompt(z=z, w=z, num_samples=0, num_rewarded=0)
    config = LoLAConfig(episodes=1, num_candidates=2, horizon=20, eval_episodes=1, safe=None)
    (curve,) = lola_seeds(model, get_task("walker:stand"), prompt, config, [0])
    assert len(curve.returns) == 1000 // (2 * 20) + 1 and np.isfinite(curve.returns).all()
    torch.testing.assert_close(curve.z.norm(), torch.tensor(math.sqrt(Z)))


def test_the_model_loader_takes_zoo_names_fastbfm_and_metamotivo_folders(tmp_path, monkeypatch, capsys):
    from fastbfm.cli import main
    from fastbfm.interop.metamotivo import MetaMotivoFB
    from fastbfm.models import load_model, model_domain
    from tests.metamotivo_fixture import write_random_checkpoint

    write_random_checkpoint(tmp_path / "mm", obs_dim=24, action_dim=6, z_dim=16)
    mm = load_model(tmp_path / "mm", discount=0.98)
    assert isinstance(mm, MetaMotivoFB) and mm.discount == 0.98 and model_domain(tmp_path / "mm") == "walker"
    zoo = load_model("walker-hilp")
    assert zoo.discount == 0.98 == zoo.meta["train"]["discount"] and model_domain("walker-hilp") == "walker"
    assert load_model("maze-fb").discount == 0.99
    with pytest.raises(FastBFMError, match="was trained with discount 0.99"):
        load_model("maze-fb", discount=0.98)
    # adapting without the discount stops before any data is read, naming the option
    monkeypatch.setattr(sys, "argv", ["fastbfm", "adapt", "--model", str(tmp_path / "mm"), "--task", "walker:walk",
                                      "--data", str(tmp_path / "absent")])
    with pytest.raises(SystemExit) as exit_info:
        main()
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 1 and err.startswith("error: ") and "give --discount" in err and len(err.splitlines()) == 1
