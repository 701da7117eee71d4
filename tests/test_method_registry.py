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
