"""Many simulations of one domain stepped together with ``mujoco.batch`` (closed loop, one call per step).

Observations and rewards equal dm_control's single-environment ones: the batch steps with
``stage=mjSTAGE_VEL``, which leaves positions and velocities current as dm_control's legacy step does.
"""

from __future__ import annotations

import mujoco
import mujoco.batch
import numpy as np

from fastbfm.envs.dmc import load_physics
from fastbfm.envs.registry import Domain, Task, get_domain


class _Fields:
    """Live (N, ...) views of the batch fields that rewards read."""

    def __init__(self, batch: mujoco.batch.Batch):
        self.geom_xpos = batch.bind("geom_xpos")
        self.ctrl = batch.ctrl


class BatchedEnv:
    """``num_envs`` copies of a domain; ``step`` takes (N, action_dim) and returns (obs, reward).

    Rewards are those of ``task`` (zeros for a reward-free batch built from a domain).
    """

    def __init__(self, task: Task | Domain, num_envs: int, nthread: int = 1):
        self.task = task if isinstance(task, Task) else None
        self.domain = get_domain(task.domain) if isinstance(task, Task) else task
        self.num_envs = num_envs
        self._physics = load_physics(self.domain)
        model = self._physics.model.ptr
        self.nq, self.nv = model.nq, model.nv
        self.batch = mujoco.batch.Batch(model, nsim=num_envs, nthread=nthread, persistent=True)
        self.fields = _Fields(self.batch)
        self._qpos, self._qvel = self.batch.qpos, self.batch.qvel
        self.t = 0

    @property
    def state_dim(self) -> int:
        return self.nq + self.nv

    def observation(self) -> np.ndarray:
        return self.domain.observe(self._qpos, self._qvel).astype(np.float32)

    def get_state(self) -> np.ndarray:
        """(N, qpos+qvel): the same layout as dm_control's ``physics.get_state()``."""
        return np.concatenate([self._qpos, self._qvel], axis=-1).copy()

    def set_state(self, states: np.ndarray) -> np.ndarray:
        states = np.asarray(states, dtype=np.float64)
        if states.shape != (self.num_envs, self.state_dim):
            raise ValueError(f"states must have shape {(self.num_envs, self.state_dim)}, got {states.shape}")
        self.batch.reset(stage=mujoco.mjtStage.mjSTAGE_NONE)
        self._qpos[:] = states[:, : self.nq]
        self._qvel[:] = states[:, self.nq :]
        self.batch.ctrl[:] = 0
        self.batch.forward()
        self.t = 0
        return self.observation()

    def reset(self, rng: np.random.Generator) -> np.ndarray:
        return self.set_state(self.domain.sample_initial_state(rng, self.num_envs))

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.batch.ctrl[:] = actions
        self.batch.step(nstep=self.domain.n_sub_steps, stage=mujoco.mjtStage.mjSTAGE_VEL)
        self.t += 1
        if self.task is None:
            return self.observation(), np.zeros(self.num_envs)
        return self.observation(), np.asarray(self.task.reward(self.fields), dtype=np.float64)

    def relabel(self, task: Task, states: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """Rewards of ``task`` at stored physics states reached by ``actions``; vectorised over the batch."""
        out = np.empty(len(states))
        for start in range(0, len(states), self.num_envs):
            chunk = slice(start, start + self.num_envs)
            n = len(states[chunk])
            self._qpos[:n] = states[chunk, : self.nq]
            self._qvel[:n] = states[chunk, self.nq :]
            self.batch.ctrl[:n] = actions[chunk]
            self.batch.forward(ids=np.arange(n), stage=mujoco.mjtStage.mjSTAGE_VEL)
            out[chunk] = task.reward(self.fields)[:n]
        return out
