"""Zero-shot prompting: a task latent from N reward-labelled dataset samples, or from a goal state."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from fastbfm.bfm.protocol import BFM
from fastbfm.data.dataset import TransitionDataset
from fastbfm.data.relabel import sample_rewards
from fastbfm.envs.registry import Task
from fastbfm.errors import FastBFMError


@dataclass
class TaskPrompt:
    """The zero-shot latent ``z`` of a reward, and ``w`` = its unprojected embedding (value units)."""

    z: torch.Tensor
    w: torch.Tensor
    num_samples: int
    num_rewarded: int


@torch.inference_mode()
def infer_task(model: BFM, task: Task, dataset: TransitionDataset, num_samples: int = 50_000, seed: int = 0) -> TaskPrompt:
    next_obs, rewards = sample_rewards(dataset, task, num_samples, np.random.default_rng(seed))
    if not np.any(rewards > 0):
        raise FastBFMError(
            f"no sample of the dataset has a positive reward for {task.full_name}: "
            "collect data that reaches the task's states, or use more samples"
        )
    w = model.reward_embedding(torch.from_numpy(next_obs), torch.from_numpy(rewards).float())
    return TaskPrompt(z=model.project(w), w=w, num_samples=len(rewards), num_rewarded=int((rewards > 0).sum()))


@torch.inference_mode()
def infer_goal(model: BFM, goal_obs: np.ndarray) -> torch.Tensor:
    goal = torch.as_tensor(np.asarray(goal_obs, dtype=np.float32))
    if goal.shape[-1] != model.obs_dim:
        raise FastBFMError(f"a goal is an observation of size {model.obs_dim}, got shape {tuple(goal.shape)}")
    return model.infer_from_goal(goal)
