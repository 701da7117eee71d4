"""Every registered adaptation method, with every budget the command line allows (0 included) and gated or
not, either runs or stops with one FastBFMError: never an AttributeError or another traceback."""

import pytest
import torch

from fastbfm.adapt import methods as registry
from fastbfm.bfm.fb import FBModel, FBModelConfig
from fastbfm.data.dataset import load_dataset
from fastbfm.envs import get_task
from fastbfm.errors import FastBFMError
from fastbfm.evaluate.experiments import adapt
from fastbfm.evaluate.grid import method_config

MAZE = get_task("point_mass_maze:reach_top_left")


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    model = FBModel(FBModelConfig(obs_dim=4, action_dim=2, z_dim=8, hidden_dim=16, backward_hidden_dim=16))
    model.discount = 0.99
    return model


@pytest.fixture(scope="module")
def dataset(maze_dataset_dir):
    return load_dataset(maze_dataset_dir)


@pytest.mark.parametrize("method", list(registry.METHODS))
@pytest.mark.parametrize("episodes", [0, 1, pytest.param(9, marks=pytest.mark.slow)])  # 9: a few real rounds of each
def test_every_method_runs_or_names_the_problem(tiny_model, dataset, method, episodes):
    config = method_config(method, episodes, eval_episodes=1)
    try:
        result = adapt(tiny_model, MAZE, dataset, config, [0], num_samples=500)
    except FastBFMError as error:
        message = str(error)
        assert message and "\n" not in message
        return
    assert len(result["curves"][0]) == len(result["episodes"]) and result["episodes"][0] == 0
    assert result["episodes"][-1] <= episodes


@pytest.mark.parametrize(
    "method, options, words",
    [("finetune", dict(safe_starts=4), ["--safe-starts does not apply to finetune", "only the budget options"]),
     ("finetune", dict(safe=False), ["--no-safe does not apply to finetune"]),
     ("cmaes", dict(score="return"), ["--score does not apply to cmaes", "--candidates, --sigma"]),
     ("race", dict(safe_starts=3, safe_duels=2), ["--safe-starts, --safe-duels does not apply to race"]),
     ("opti-ucb", dict(candidates=4), ["--candidates does not apply to opti-ucb", "--warm-start"]),
     ("lola", dict(safe=False, confidence=0.9), ["--confidence does not apply to lola with --no-safe"]),
     ("lola-unsafe", dict(safe_duels=2), ["--safe-duels does not apply to lola-unsafe"]),
     ("rela", dict(lr=0.1), ["--lr does not apply to rela"])],
)  # fmt: skip
def test_an_option_the_method_does_not_read_is_refused(method, options, words):
    """Before: ignored without a word (the safe gate's options on fine-tuning, --score on CMA-ES)."""
    with pytest.raises(registry.OptionError) as error:
        registry.get_method(method).configure(registry.MethodOptions(**options))
    for word in words:
        assert word in str(error.value), (word, str(error.value))


@pytest.mark.parametrize("method", list(registry.METHODS))
def test_every_option_a_method_declares_reaches_its_config(method):
    """What a method declares it reads, it reads: setting the option changes the config it builds."""
    entry = registry.get_method(method)
    values = {"candidates": 7, "horizon": 33, "sigma": 0.123, "lr": 0.0456, "score": "discounted", "safe": False, "confidence": 0.77,
              "safe_starts": 3, "safe_duels": 2, "state_latent": True, "warm_start": True}  # fmt: skip
    plain = entry.configure(registry.MethodOptions())
    for name in entry.options:
        changed = entry.configure(registry.MethodOptions(**{name: values[name]}))
        assert changed != plain, (method, name)


def test_the_command_line_calls_an_option_that_does_not_apply_a_usage_error(monkeypatch, capsys):
    from tests.cli_helpers import assert_one_line_error, run_cli

    code, err = run_cli(["adapt", "--model", "maze-fb", "--task", "point_mass_maze:reach_top_left", "--method", "cmaes", "--score", "return"],
                        monkeypatch, capsys)  # fmt: skip
    assert_one_line_error(code, err, "--score does not apply to cmaes")
    assert code == 2
