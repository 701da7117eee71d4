"""Many simulations of one domain stepped together with ``mujoco.batch`` (closed loop, one call per step).

Observations and rewards equal dm_control's single-environment ones: the batch steps with
``stage=mjSTAGE_VEL``, which leaves positions, velocities and their sensors current as dm_control's
legacy step does, while acceleration sensors describe the state before the last substep, as there.
"""

from __future__ import annotations

import os
import time

import mujoco
import mujoco.batch
import numpy as np

from fastbfm.envs.registry import Domain, Task, get_domain
from fastbfm.envs.user_reward import UserReward, UserRewardError, UserVectorReward, check_finite_rewards
from fastbfm.errors import FastBFMError
from fastbfm.schemas import MAX_BATCH_ENVS


class BatchFields:
    """Live (N, ...) views of the batch's data fields, under MjData's names (see :class:`Fields`)."""

    def __init__(self, batch: mujoco.batch.Batch, names: tuple[str, ...]):
        self.qpos, self.qvel, self.act, self.ctrl = batch.qpos, batch.qvel, batch.act, batch.ctrl
        for name in names:
            setattr(self, name, batch.bind(name))


class BatchedEnv:
    """``num_envs`` copies of a domain; ``step`` takes (N, action_dim) and returns (obs, reward).

    Rewards are those of ``task`` (zeros for a reward-free batch built from a domain). Tasks with only a
    dm_control-style ``physics_reward`` are evaluated one simulation at a time on a copy of its data.
    """

    def __init__(self, task: Task | Domain, num_envs: int, nthread: int | None = None, kinematics_only: bool = False):
        self.task = task if isinstance(task, Task) else None
        self.domain = get_domain(task.domain) if isinstance(task, Task) else task
        if not 1 <= num_envs <= MAX_BATCH_ENVS:
            raise FastBFMError(
                f"a batch of {num_envs} simulations (e.g. seeds x evaluation episodes, or candidates x seeds) is outside "
                f"1..{MAX_BATCH_ENVS}: lower the counts"
            )
        self.num_envs = num_envs
        self._physics = self.domain.make_physics()
        if self.task is not None and self.task.decorate is not None:
            self.task.decorate(self._physics)
        model = self._physics.model.ptr
        if kinematics_only:
            # For relabelling only: rewards read positions, velocities and their sensors, which contacts and
            # constraints do not change; skipping them makes a forward pass about 1.5x cheaper.
            model.opt.disableflags |= mujoco.mjtDisableBit.mjDSBL_CONTACT | mujoco.mjtDisableBit.mjDSBL_CONSTRAINT
        self.kinematics_only = kinematics_only
        self.nq, self.nv, self.na = model.nq, model.nv, model.na
        if nthread is None:
            # A thread pays off from about 8 simulations each (measured: walker, 16 sims, 1.9x on 2 threads).
            nthread = max(1, min(os.cpu_count() or 1, num_envs // 8))
        self.batch = mujoco.batch.Batch(model, nsim=num_envs, nthread=nthread, persistent=True)
        self.fields = BatchFields(self.batch, self.domain.bound_fields)
        self.t = 0
        self.sim_seconds = 0.0
        """Wall-clock spent in physics and rewards (set_state and step), so callers can report compute without it."""

    @property
    def model(self):
        """The dm_control ``MjModel`` wrapper of the simulated model (named access to its fields)."""
        return self._physics.model

    @property
    def state_dim(self) -> int:
        return self.nq + self.nv + self.na

    def observation(self) -> np.ndarray:
        return np.asarray(self.domain.observe(self.fields), dtype=np.float32)

    def get_state(self) -> np.ndarray:
        """(N, qpos+qvel+act): the layout of dm_control's ``physics.get_state()``."""
        f = self.fields
        return np.concatenate([f.qpos, f.qvel, f.act], axis=-1)

    def _write_state(self, states: np.ndarray, n: int) -> None:
        f = self.fields
        f.qpos[:n] = states[:, : self.nq]
        f.qvel[:n] = states[:, self.nq : self.nq + self.nv]
        f.act[:n] = states[:, self.nq + self.nv :]

    def set_state(self, states: np.ndarray) -> np.ndarray:
        states = np.asarray(states, dtype=np.float64)
        if states.shape != (self.num_envs, self.state_dim):
            raise ValueError(f"states must have shape {(self.num_envs, self.state_dim)}, got {states.shape}")
        start = time.perf_counter()
        self.batch.reset(stage=mujoco.mjtStage.mjSTAGE_NONE)
        self._write_state(states, self.num_envs)
        self.fields.ctrl[:] = 0
        self.batch.forward()
        self.t = 0
        obs = self.observation()
        self.sim_seconds += time.perf_counter() - start
        return obs

    def reset(self, rng: np.random.Generator) -> np.ndarray:
        return self.set_state(self.domain.sample_initial_state(rng, self.num_envs))

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.kinematics_only:
            raise RuntimeError("a kinematics-only batch relabels states; it cannot simulate")
        if not np.isfinite(actions).all():  # MuJoCo would only log a warning and zero them
            raise FastBFMError("non-finite actions (NaN or inf) sent to the simulation: the policy or its latent diverged")
        start = time.perf_counter()
        self.fields.ctrl[:] = actions
        self.batch.step(nstep=self.domain.n_sub_steps, stage=mujoco.mjtStage.mjSTAGE_VEL)
        self.t += 1
        obs = self.observation()
        rewards = np.zeros(self.num_envs) if self.task is None else self.rewards(self.task)
        self.sim_seconds += time.perf_counter() - start
        return obs, rewards

    def rewards(self, task: Task, n: int | None = None, where: str | None = None) -> np.ndarray:
        """Rewards of ``task`` at the current data of the first ``n`` simulations (``where``: what they
        are, for errors; default: this step)."""
        n = self.num_envs if n is None else n
        if task.vectorized:
            rewards = np.asarray(task.reward(self.fields), dtype=np.float64)
            user = isinstance(task.reward, UserVectorReward)
            if rewards.shape != (self.num_envs,):
                raise UserRewardError(
                    f"the reward {task.reward.name if user else task.full_name} returned shape {rewards.shape} for {self.num_envs} "
                    "simulations; a vectorised reward returns one value per simulation"
                )
            if user:
                check_finite_rewards(rewards[:n], task.reward.name, where or f"at step {self.t}")
            return rewards[:n].copy()
        data = self._physics.data.ptr
        user = isinstance(task.physics_reward, UserReward)
        where = where or f"at step {self.t}"
        out = np.empty(n)
        for i in range(n):
            self.batch.get_data(i, data)
            out[i] = task.physics_reward(self._physics, f"{where} of simulation {i}") if user else task.physics_reward(self._physics)
        return out

    def relabel(self, task: Task, states: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """Rewards of ``task`` at stored physics states reached by ``actions``, in batches of simulations."""
        out = np.empty(len(states))
        for start in range(0, len(states), self.num_envs):
            chunk = slice(start, start + self.num_envs)
            n = len(states[chunk])
            self._write_state(states[chunk], n)
            self.fields.ctrl[:n] = actions[chunk]
            self.batch.forward(ids=np.arange(n), stage=mujoco.mjtStage.mjSTAGE_VEL)
            out[chunk] = self.rewards(task, n, where=f"on relabelled samples {start} to {start + n - 1}")
        return out
