"""Reset-free LoLA, ReLA and actor-critic fine-tuning on toy BFMs whose best latent is known."""

import numpy as np
import pytest
import torch
from torch import nn

from fastbfm.adapt.finetune import FinetuneConfig, finetune_seeds
from fastbfm.adapt.lola import LoLAConfig, lola, lola_seeds
from fastbfm.adapt.rela import ReLAConfig, rela_seeds
from fastbfm.bfm.losses import aggregate
from fastbfm.bfm.nn import project_to_sphere
from fastbfm.envs import get_task
from fastbfm.envs.point_mass_maze import POINTMASS_GEOM
from fastbfm.envs.registry import Task
from fastbfm.errors import FastBFMError
from fastbfm.rollout import evaluate_latent
from tests.test_lola import GoalToyBFM, _prompt

TARGET = np.array([-0.15, 0.15])
OPTIMUM = [-1.0, 1.0, 1.0]  # GoalToyBFM steers to 0.15 * z[:2] = TARGET
START = [-1.25, 0.75, 1.0]  # steers about 0.05 away from the target


def _dense_reward(fields):
    """Maze reach of the top-left target with a dense reward: online critics learn it in seconds."""
    distance = np.linalg.norm(np.asarray(fields.geom_xpos)[..., POINTMASS_GEOM, :2] - TARGET, axis=-1)
    return np.exp(-distance / 0.05)


DENSE = Task("point_mass_maze", "toy_dense_top_left", _dense_reward, "dense reach of (-0.15, 0.15)")


class FeatureToyBFM(GoalToyBFM):
    """GoalToyBFM with the rest of the protocol: features and successor features that know nothing."""

    def features(self, obs):
        return torch.zeros(obs.shape[0], self.z_dim)

    def successor_features(self, obs, action, z):
        return torch.zeros(2, obs.shape[0], self.z_dim)


class NetToyBFM(nn.Module):
    """A toy BFM with trainable networks: a goal controller with a learnable goal offset (the actor) and
    a small successor-feature MLP (the critic). Fine-tuning the offset to TARGET - 0.15 z[:2] is optimal."""

    obs_dim, action_dim, z_dim = 4, 2, 3
    discount = 0.99

    def __init__(self):
        super().__init__()
        self.offset = nn.Parameter(torch.zeros(2))
        gen = torch.Generator().manual_seed(0)
        self.psi = nn.ModuleList(nn.Sequential(nn.Linear(4, 64), nn.ReLU(), nn.Linear(64, 3)) for _ in range(2))
        with torch.no_grad():
            for p in self.psi.parameters():
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
            for net in self.psi:  # a critic that starts knowing nothing: Q = 0
                net[-1].weight.zero_()
                net[-1].bias.zero_()
        self.requires_grad_(False)

    def act(self, obs, z, mean=True, generator=None):
        goal = 0.15 * z[:, :2] + self.offset
        return (20 * (goal - obs[:, :2]) - 5 * obs[:, 2:]).clamp(-1, 1)

    def features(self, obs):
        return torch.zeros(obs.shape[0], self.z_dim)

    def successor_features(self, obs, action, z):
        # the critic sees the action as the displacement it asks for: Q's action gradient is then easy
        # to learn in a few episodes (on a raw (s, a) input it needs far more data than a test affords)
        x = torch.cat([10 * (obs[:, :2] + 0.05 * action), 10 * obs[:, 2:]], -1)
        return torch.stack([net(x) for net in self.psi])

    def q_value(self, obs, action, z, z_reward, pessimism=0.5):
        return aggregate((self.successor_features(obs, action, z) * z_reward).sum(-1), pessimism)

    def project(self, z):
        return project_to_sphere(z)


def _optimum(model, task, episodes=2):
    return evaluate_latent(model, task, project_to_sphere(torch.tensor(OPTIMUM)), episodes).mean()


# -- reset-free LoLA ------------------------------------------------------------------------------


def test_reset_free_lola_climbs_within_budget():
    task, model = get_task("point_mass_maze:reach_top_left"), GoalToyBFM()
    config = LoLAConfig(episodes=12, num_candidates=4, horizon=250, sigma=0.1, lr=0.05, reset_free=True, eval_episodes=2, safe=None)
    curve = lola(model, task, _prompt(START), config)
    assert len(curve.returns) == 12 * 1000 // (4 * 250) + 1
    assert curve.episodes[-1] == config.episodes
    assert curve.returns[-1] > curve.returns[0] + 0.3 * (_optimum(model, task) - curve.returns[0])
    torch.testing.assert_close(curve.z.norm(), torch.tensor(3.0).sqrt())


def test_reset_free_lola_resets_only_at_episode_boundaries(monkeypatch):
    """Start states are drawn only when the chain of segments begins an episode (every 1000 steps)."""
    import dataclasses

    import fastbfm.adapt.adapter as driver_module
    from fastbfm.envs.registry import get_domain

    domain, draws = get_domain("point_mass_maze"), []

    def counting(rng, n):
        draws.append(n)
        return domain.sample_initial_state(rng, n)

    counted = dataclasses.replace(domain, sample_initial_state=counting)
    monkeypatch.setattr(driver_module, "get_domain", lambda name: counted)
    # H = 300 does not divide 1000: segments of 300, 300, 300, 100 steps per episode, 2 candidates each
    config = LoLAConfig(episodes=4, num_candidates=2, horizon=300, reset_free=True, eval_episodes=1, safe=None)
    curve = lola(GoalToyBFM(), get_task("point_mass_maze:reach_top_left"), _prompt(START), config)
    np.testing.assert_allclose(curve.episodes, [0, 0.6, 1.2, 1.8, 2.0, 2.6, 3.2, 3.8, 4.0])
    assert len(draws) == 2  # 4 episodes of budget with k = 2: two chain episodes of 1000 steps


def test_reset_free_lola_seeds_in_lockstep_equal_lone_runs():
    task = get_task("point_mass_maze:reach_top_left")
    config = LoLAConfig(episodes=3, num_candidates=2, horizon=400, reset_free=True, eval_episodes=2, safe=None)
    together = lola_seeds(GoalToyBFM(), task, _prompt(START), config, [5, 6])
    for seed, curve in zip([5, 6], together):
        alone = lola(GoalToyBFM(), task, _prompt(START), LoLAConfig(**{**config.__dict__, "seed": seed}))
        np.testing.assert_allclose(curve.returns, alone.returns, rtol=1e-9)
        torch.testing.assert_close(curve.z, alone.z)
    assert together[0].returns != together[1].returns


# -- ReLA -----------------------------------------------------------------------------------------

RELA = ReLAConfig(episodes=6, updates_per_episode=100, batch_size=128, hidden_dim=64, critic_lr=1e-3, latent_lr=3e-2, eval_episodes=2, safe=None)


def test_rela_climbs_towards_the_known_optimum_within_budget():
    model = FeatureToyBFM()
    (curve,) = rela_seeds(model, DENSE, _prompt(START), RELA, [0])
    np.testing.assert_array_equal(curve.episodes, np.arange(7))  # one episode of budget per step
    assert curve.returns[-1] > curve.returns[0] + 0.2 * (_optimum(model, DENSE) - curve.returns[0])
    torch.testing.assert_close(curve.z.norm(), torch.tensor(3.0).sqrt())


def test_rela_state_conditioned_latent_starts_at_zero_shot_and_improves():
    model = FeatureToyBFM()
    config = ReLAConfig(**{**RELA.__dict__, "latent": "state", "delta_lr": 1e-3})
    (curve,) = rela_seeds(model, DENSE, _prompt(START), config, [0])
    assert curve.returns[0] == pytest.approx(evaluate_latent(model, DENSE, _prompt(START).z, 2).mean())
    assert curve.returns[-1] > curve.returns[0]
    assert curve.z is None


def test_rela_seeds_in_lockstep_equal_lone_runs_and_reproduce():
    config = ReLAConfig(**{**RELA.__dict__, "episodes": 2, "updates_per_episode": 20})
    together = rela_seeds(FeatureToyBFM(), DENSE, _prompt(START), config, [3, 4])
    for seed, curve in zip([3, 4], together):
        alone = rela_seeds(FeatureToyBFM(), DENSE, _prompt(START), config, [seed])[0]
        assert curve.returns == alone.returns
        torch.testing.assert_close(curve.z, alone.z)
    assert not torch.equal(together[0].z, together[1].z)


# -- fine-tuning ----------------------------------------------------------------------------------

FINETUNE = FinetuneConfig(episodes=6, updates_per_episode=100, batch_size=128, critic_lr=1e-3, actor_lr=1e-3, eval_episodes=2)


def test_finetune_improves_the_actor_and_leaves_the_model_untouched():
    model = NetToyBFM()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    (curve,) = finetune_seeds(model, DENSE, _prompt(START), FINETUNE, [0])
    np.testing.assert_array_equal(curve.episodes, np.arange(7))
    # the critic starts at zero: the actor first unlearns (the dip), then climbs past zero-shot
    assert min(curve.returns) < curve.returns[0]
    assert curve.returns[-1] > curve.returns[0] + 0.1 * (_optimum(model, DENSE) - curve.returns[0])
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, before[k])
    assert curve.z is None and curve.compute_s > 0


def test_finetune_seeds_in_lockstep_equal_lone_runs():
    config = FinetuneConfig(**{**FINETUNE.__dict__, "episodes": 2, "updates_per_episode": 20})
    together = finetune_seeds(NetToyBFM(), DENSE, _prompt(START), config, [3, 4])
    for seed, curve in zip([3, 4], together):
        alone = finetune_seeds(NetToyBFM(), DENSE, _prompt(START), config, [seed])[0]
        assert curve.returns == alone.returns
    assert together[0].returns != together[1].returns


def test_finetune_splits_critic_and_actor_parameters():
    from fastbfm.adapt.finetune import split_parameters

    model = NetToyBFM()
    critic, actor = split_parameters(model, torch.zeros(1, 4), torch.zeros(1, 2), torch.ones(1, 3))
    assert [p is model.offset for p in actor] == [True]
    assert len(critic) == len(list(model.psi.parameters()))


def test_configs_reject_bad_values_and_finetune_needs_a_module():
    with pytest.raises(FastBFMError, match="unknown ReLA latent"):
        ReLAConfig(latent="local")
    with pytest.raises(FastBFMError, match="unknown ReLA residual"):
        ReLAConfig(residual="full")
    with pytest.raises(FastBFMError, match="positive learning rates"):
        FinetuneConfig(actor_lr=0)
    with pytest.raises(FastBFMError, match="torch.nn.Module"):
        finetune_seeds(FeatureToyBFM(), DENSE, _prompt(START), FINETUNE, [0])


# -- evaluation schedule and compute accounting (every method) -----------------------------------


@pytest.mark.parametrize("method", ["lola", "cmaes", "opti-ucb", "rela", "race"])
def test_sparse_evaluation_keeps_the_method_and_its_final_return(method):
    """Evaluating every 4 episodes instead of after each step must not change what the method does:
    the points it keeps equal the dense curve's, the final budget is always evaluated, and the
    simulation time is a positive part of the compute."""
    from dataclasses import replace

    from fastbfm.adapt.opti import OptiConfig, opti_seeds
    from fastbfm.adapt.race import RaceConfig, race_seeds
    from fastbfm.adapt.search import SearchConfig, search_seeds

    task, model = get_task("point_mass_maze:reach_top_left"), FeatureToyBFM()
    configs = {
        "lola": (lola_seeds, LoLAConfig(episodes=5, num_candidates=2, horizon=500, eval_episodes=1, safe=None)),
        "cmaes": (search_seeds, SearchConfig(method="cmaes", episodes=5, population=2, eval_episodes=1, safe=None)),
        "opti-ucb": (opti_seeds, OptiConfig(rule="ucb", episodes=5, eval_episodes=1, warm_start=True)),
        "rela": (rela_seeds, ReLAConfig(episodes=5, updates_per_episode=4, batch_size=32, eval_episodes=1, safe=None)),
        "race": (race_seeds, RaceConfig(episodes=5, stages=((4, 100, 1), (2, 250, 1), (2, 1000, 1)), eval_episodes=1, confidence=None)),
    }
    run, config = configs[method]
    dense = run(model, task, _prompt(START), config, [0])[0]
    sparse = run(model, task, _prompt(START), replace(config, eval_every=4.0), [0])[0]
    kept = [e for e in dense.episodes if e % 4 == 0] + ([dense.episodes[-1]] if dense.episodes[-1] % 4 else [])
    assert len(kept) < len(dense.episodes)
    assert sparse.episodes == kept and sparse.episodes[-1] == dense.episodes[-1]
    assert sparse.returns == [dense.returns[dense.episodes.index(e)] for e in kept]
    assert 0 < sparse.sim_s < sparse.compute_s


def test_every_registered_method_is_an_adapter_behind_one_interface():
    """The CLI and the grid reach every method through the registry; a config names its method."""
    from fastbfm.adapt.adapter import Adapter
    from fastbfm.adapt.methods import GATED, METHODS, MethodOptions
    from fastbfm.evaluate.grid import grid_methods, method_config

    task, model = get_task("point_mass_maze:reach_top_left"), NetToyBFM()
    # 10 methods, and the ungated variant of each of the 7 latent-search ones
    assert len(METHODS) == 17 and grid_methods() == ["zero-shot", *METHODS, "oracle"]
    assert {name for name in METHODS if name.endswith("-unsafe")} == {f"{m}-unsafe" for m in GATED}
    for name, method in METHODS.items():
        config = method_config(name, episodes=20, eval_episodes=1)
        assert config == method.build(MethodOptions(episodes=20, eval_episodes=1)) and config.method_name == name
        adapter = method.adapter(model, _prompt(START), config, 0, 1000)
        assert isinstance(adapter, Adapter) and adapter.rollouts >= 1 and 1 <= adapter.next_horizon() <= 1000


def test_a_method_added_with_one_module_and_one_registry_line_runs_through_adapt_grid_and_summarize(
    tmp_path, maze_dataset_dir, monkeypatch, capsys
):
    """tests/toy_method.py is a whole method; registering it is the one line a user adds. The grid runs
    it in worker processes, which receive it from the grid."""
    import json
    import sys

    from fastbfm.adapt import methods
    from fastbfm.cli import main
    from fastbfm.evaluate.grid import run_grid
    from fastbfm.report.adaptation import write_report
    from tests.toy_method import TOY

    methods.register(TOY)
    try:
        task = "point_mass_maze:reach_top_left"
        argv = ["adapt", "--model", "maze-fb", "--task", task, "--method", "toy", "--episodes", 3, "--seeds", 1, "--eval-episodes", 1,
                "--data", maze_dataset_dir, "--json", "-q"]
        monkeypatch.setattr(sys, "argv", ["fastbfm", *map(str, argv)])
        with pytest.raises(SystemExit) as exit_info:
            main()
        out, err = capsys.readouterr()
        assert exit_info.value.code == 0, err
        result = json.loads(out)["results"][0]
        assert result["method"] == "toy" and result["episodes"] == [0.0, 1.0, 2.0, 3.0]
        # a hill climb never reports a latent worse than the best one it has rolled out; its first round is z_r
        assert result["curves"][0][0] == pytest.approx(result["zero_shot"])
        grid = run_grid(tmp_path / "grid", ["maze-fb"], [task], ["zero-shot", "toy"], [0], episodes=3, eval_episodes=1,
                        workers=1, progress=False)
        assert {r["method"] for r in grid["results"]} == {"zero-shot", "toy"}
        report = write_report([tmp_path / "grid"], tmp_path / "report.md", "fastbfm summarize grid")
        assert [r["method"] for r in report["summary"]] == ["toy"]
        assert "| Toy hill climb | 1 |" in (tmp_path / "report.md").read_text()
    finally:
        methods.METHODS.pop("toy"), methods._PLUGINS.pop("toy")


def test_a_method_the_registry_does_not_know_still_appears_in_summaries(tmp_path):
    """Grids of another version (or a method registered elsewhere) are listed after the known methods."""
    from fastbfm.report.adaptation import summarize

    rows = [{"model": "m", "task": "t", "method": method, "seed": 0, "episodes": e, "return": v, "budget_episodes": 20.0,
             "compute_s_per_episode": 0.0, "sim_s_per_episode": 0.0}
            for method, curve in {"zero-shot": [(0, 50.0)], "lola": [(0, 50.0), (20, 60.0)], "brand-new": [(0, 50.0), (20, 70.0)]}.items()
            for e, v in curve]
    summary = summarize(rows)["summary"]
    assert [r["method"] for r in summary] == ["lola", "brand-new"]
    assert summary[1]["improvement_20"] == pytest.approx(0.4)


def test_a_full_replay_buffer_names_the_budget():
    from fastbfm.adapt.online import ReplayBuffer

    buffer = ReplayBuffer(capacity=2, obs_dim=1, action_dim=1)
    buffer.add(np.zeros((2, 1)), np.zeros((2, 1)), np.zeros(2), np.zeros((2, 1)))
    with pytest.raises(FastBFMError, match="raise the config's episodes"):
        buffer.add(np.zeros((1, 1)), np.zeros((1, 1)), np.zeros(1), np.zeros((1, 1)))
    assert buffer.size == 2
