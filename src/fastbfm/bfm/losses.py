"""Pure loss functions: tensors in, (loss, metrics) out, nothing else touched.

Metrics are detached 0-dim tensors on the inputs' device (reading them as numbers would synchronise a
GPU with the host at every update); the training loop reads their sums once per log interval.
"""

from __future__ import annotations

import torch


def aggregate(values: torch.Tensor, pessimism: float) -> torch.Tensor:
    """Combine ensemble predictions (K, ...) as mean - pessimism * mean pairwise |difference|.

    With K = 2, pessimism 0 is the mean and 0.5 is the minimum: one knob for both conventions.
    """
    k = values.shape[0]
    mean = values.mean(0)
    if pessimism == 0 or k == 1:
        return mean
    diffs = (values.unsqueeze(0) - values.unsqueeze(1)).abs()
    spread = diffs.sum((0, 1)) / (k * (k - 1))
    return mean - pessimism * spread


def _off_diagonal_mean(matrix: torch.Tensor) -> torch.Tensor:
    """Mean of the off-diagonal entries of the last two (square) axes: the whole sum less the diagonal's.
    Neither boolean indexing (it asks the host for the number of entries: a GPU sync) nor a mask (an
    N x N allocation and a pass over the matrix at every update)."""
    n = matrix.shape[-1]
    total = matrix.sum((-2, -1)) - torch.diagonal(matrix, dim1=-2, dim2=-1).sum(-1)
    return total / (n * (n - 1))


def fb_loss(M: torch.Tensor, target_M: torch.Tensor, discount: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Forward-backward TD loss on the N x N measure matrices.

    ``M[k, i, j] = F_k(s_i, a_i, z_i)^T B(s'_j)`` for each ensemble member; ``target_M[i, j]`` is the
    aggregated target ``F'(s'_i, a'_i, z_i)^T B'(s'_j)`` (no gradient). Off-diagonal entries are fitted
    to the discounted target (samples from the data distribution); the diagonal is pushed up (the
    positives: s'_i follows (s_i, a_i)). Summed over the ensemble.
    """
    target = discount.view(1, -1, 1) * target_M.detach()
    off_diag = 0.5 * _off_diagonal_mean((M - target).pow(2))
    diag = torch.diagonal(M, dim1=-2, dim2=-1).mean(-1)
    loss = (off_diag - diag).sum()
    return loss, {"fb_offdiag": off_diag.detach().mean(), "fb_diag": diag.detach().mean()}


def orthonormality_loss(B: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Unbiased estimate (up to a constant) of ||E[B B^T] - I||^2 from a batch (N, d), Meta Motivo's scale."""
    cov = B @ B.T
    off_diag = 0.5 * _off_diagonal_mean(cov.pow(2))
    diag = torch.diagonal(cov).mean()
    return off_diag - diag, {"ortho_offdiag": off_diag.detach(), "ortho_diag": diag.detach()}


def actor_loss(Q: torch.Tensor, pessimism: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Q is (K, N): the ensemble's F_k(s, pi(s, z), z)^T z; maximise its pessimistic aggregate."""
    q = aggregate(Q, pessimism).mean()
    return -q, {"actor_q": q.detach()}


def successor_feature_loss(
    psi: torch.Tensor, target_psi: torch.Tensor, features: torch.Tensor, discount: torch.Tensor, z: torch.Tensor, q_loss: bool = False
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """TD loss of successor features psi_k(s, a, z) (K, N, d) towards phi(s') + gamma_i psi'(s', a', z).

    The bootstrap takes, per sample, the target head with the smaller value psi'^T z (HILP's choice).
    ``q_loss`` fits only the values psi_k^T z (HILP on quadruped); otherwise the whole vector.
    """
    target_values = (target_psi * z).sum(-1)
    pick = target_values.argmin(0)
    bootstrap = target_psi.gather(0, pick.view(1, -1, 1).expand(1, *target_psi.shape[1:]))[0]
    target = (features + discount.view(-1, 1) * bootstrap).detach()
    if q_loss:
        err = ((psi - target) * z).sum(-1).pow(2)
    else:
        err = (psi - target).pow(2).sum(-1)
    loss = err.mean(-1).sum()
    return loss, {"sf_td": err.detach().mean(), "target_q": (target * z).sum(-1).mean()}


def expectile_weights(advantage: torch.Tensor, expectile: float) -> torch.Tensor:
    """IQL's asymmetric weights: ``expectile`` where the advantage is >= 0, ``1 - expectile`` elsewhere."""
    return torch.where(advantage >= 0, torch.full_like(advantage, expectile), torch.full_like(advantage, 1 - expectile))


def hilbert_value_loss(
    value: torch.Tensor,
    target_next_value: torch.Tensor,
    target_value: torch.Tensor,
    reached: torch.Tensor,
    discount: float,
    expectile: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """HILP's goal-conditioned value loss for V_k(s, g) = -|phi_k(s) - phi_k(g)| (K, N).

    Reward -1 until the goal is reached (``reached``: s = g), where the episode ends. Each V_k regresses
    on its own target -1 + gamma V'_k(s', g) with expectile weights from the advantage of the
    pessimistic (min over k) next value against the mean current target value.
    """
    reward = reached.float() - 1
    mask = 1 - reached.float()
    q = (reward + discount * mask * target_next_value).detach()
    advantage = (reward + discount * mask * target_next_value.min(0).values - target_value.mean(0)).detach()
    loss = (expectile_weights(advantage, expectile) * (q - value).pow(2)).mean(-1).sum()
    return loss, {"phi_value": value.detach().mean(), "phi_advantage": advantage.mean()}
