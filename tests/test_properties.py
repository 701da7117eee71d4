"""Property-based tests: projection and reward-inference invariants, the LoLA gradient estimator, and
relabelling against simulation. Example counts stay small so the suite stays fast."""

import functools

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from fastbfm.adapt.lola import leave_one_out_gradient
from fastbfm.bfm.fb import FBModel, FBModelConfig
from fastbfm.bfm.nn import project_to_sphere
from fastbfm.data.relabel import relabel
from fastbfm.envs import get_task, make_env
from tests.model_helpers import with_random_biases

FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])

finite = st.floats(-1e3, 1e3, allow_nan=False, width=32)
latents = st.integers(1, 16).flatmap(
    lambda d: arrays(np.float32, st.tuples(st.integers(1, 5), st.just(d)), elements=finite).filter(
        lambda z: (np.linalg.norm(z.astype(np.float64), axis=-1) > 1e-2).all()
    )
)


@FAST
@given(z=latents, scale=st.floats(1e-3, 1e3))
def test_projection_lands_on_the_sqrt_d_sphere_is_idempotent_and_scale_invariant(z, scale):
    z = torch.from_numpy(z)
    d = z.shape[-1]
    p = project_to_sphere(z)
    torch.testing.assert_close(p.norm(dim=-1), torch.full((len(z),), d**0.5), rtol=1e-5, atol=0)
    torch.testing.assert_close(project_to_sphere(p), p, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(project_to_sphere(scale * z), p, rtol=1e-4, atol=1e-5)


@functools.lru_cache(maxsize=1)
def _fb():
    torch.manual_seed(0)
    return with_random_biases(FBModel(FBModelConfig(obs_dim=4, action_dim=2, z_dim=8, hidden_dim=16, backward_hidden_dim=16)), 0.1)


@FAST
@given(
    obs=arrays(np.float32, st.tuples(st.integers(2, 40), st.just(4)), elements=st.floats(-1, 1, width=32)),
    seed=st.integers(0, 2**16),
    scale=st.floats(1e-3, 1e3),
)
def test_reward_latent_is_unchanged_by_positive_reward_scaling(obs, seed, scale):
    rewards = np.random.default_rng(seed).uniform(0, 1, len(obs)).astype(np.float32)
    rewards[0] = 1.0  # not all zero
    model, obs = _fb(), torch.from_numpy(obs)
    z = model.infer_from_rewards(obs, torch.from_numpy(rewards))
    torch.testing.assert_close(model.infer_from_rewards(obs, torch.from_numpy(scale * rewards)), z, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(z.norm(), torch.tensor(8.0).sqrt())


@FAST
@given(
    d=st.integers(1, 4),
    k=st.integers(2, 6),
    sigma=st.floats(0.05, 1.0),
    seed=st.integers(0, 2**16),
)
def test_leave_one_out_estimator_is_unbiased_on_a_quadratic(d, k, sigma, seed):
    """For R(x) = -|x - c|^2 + b.x, E[estimate at mu] = grad R(mu) = -2 (mu - c) + b exactly (Gaussian
    smoothing of a quadratic only adds a constant). Checked to 5 standard errors over many batches."""
    rng = np.random.default_rng(seed)
    mu, c, b = rng.normal(size=d), rng.normal(size=d), rng.normal(size=d)
    n = 20_000
    eps = rng.standard_normal((n, k, d))
    x = mu + sigma * eps
    scores = -((x - c) ** 2).sum(-1) + x @ b
    estimates = leave_one_out_gradient(scores, torch.from_numpy(eps).float(), sigma).double().numpy()
    truth = -2 * (mu - c) + b
    stderr = estimates.std(0) / np.sqrt(n)
    assert np.all(np.abs(estimates.mean(0) - truth) < 5 * stderr + 1e-3), (estimates.mean(0), truth, stderr)


@FAST
@given(s=st.integers(1, 3), k=st.integers(2, 5), d=st.integers(1, 6), seed=st.integers(0, 2**16))
def test_leave_one_out_estimator_equals_lolas_former_inline_update(s, k, d, seed):
    """Factoring the estimator out of LoLA's loop changed nothing, bit for bit."""
    rng = np.random.default_rng(seed)
    scores, eps, sigma = rng.normal(size=(s, k)) * 100, torch.randn(s, k, d, generator=torch.Generator().manual_seed(seed)), 0.1
    advantages = torch.from_numpy(scores - (scores.sum(1, keepdims=True) - scores) / (k - 1)).float()
    former = -(advantages.unsqueeze(-1) * eps).mean(1) / sigma
    assert torch.equal(-leave_one_out_gradient(scores, eps, sigma), former)


TASKS = [
    "point_mass_maze:reach_top_left",
    "point_mass_maze:reach_top_right",
    "point_mass_maze:reach_bottom_left",
    "point_mass_maze:reach_bottom_right",
    "walker:stand",
    "walker:walk",
    "walker:run",
    "walker:flip",
]


@functools.lru_cache(maxsize=None)
def _env(task_name):
    env = make_env(task_name, seed=0)
    env.reset()
    return env


@SLOW
@given(task_name=st.sampled_from(TASKS), seed=st.integers(0, 2**16), steps=st.integers(0, 30))
def test_relabelling_equals_simulation_on_random_states(task_name, seed, steps):
    """From a random state (a reset, then up to 30 random steps, then random velocities), one simulated
    step's reward equals the relabelled reward of the state it reaches."""
    env, task = _env(task_name), get_task(task_name)
    rng = np.random.default_rng(seed)
    physics = env.physics
    action_dim = env.action_spec().shape[0]
    env.reset()
    for _ in range(steps):
        env.step(rng.uniform(-1, 1, action_dim))
    state = physics.get_state().copy()
    nq = physics.model.nq
    state[nq:] += rng.normal(scale=0.5, size=len(state) - nq)
    physics.set_state(state)
    action = rng.uniform(-1, 1, action_dim)
    reward = env.step(action).reward
    relabelled = relabel(task, physics.get_state()[None].copy(), action[None])
    np.testing.assert_allclose(relabelled, [reward], atol=1e-6, rtol=0)
