import os

import numpy as np
import pytest
import torch

from fastbfm.data.collect import CollectConfig, collect

# FASTBFM_TEST_THREADS runs the suite at another thread count (results must not depend on it beyond tolerances).
torch.set_num_threads(int(os.environ.get("FASTBFM_TEST_THREADS", "1")))


@pytest.fixture(scope="session")
def maze_dataset_dir(tmp_path_factory):
    """A small maze dataset from the real collector (40 episodes)."""
    folder = tmp_path_factory.mktemp("maze_data")
    collect(CollectConfig(episodes=40, num_envs=10, seed=3), folder, progress=False)
    return folder


@pytest.fixture
def tiny_preset(monkeypatch):
    """An FB preset named "tiny" (z 8, widths 32, batch 32): real training in milliseconds per update."""
    from fastbfm.bfm import fb

    monkeypatch.setitem(fb.PRESETS, "tiny", (dict(z_dim=8, hidden_dim=32, backward_hidden_dim=32), fb.FBTrainConfig(batch_size=32)))


@pytest.fixture
def rng():
    return np.random.default_rng(0)
