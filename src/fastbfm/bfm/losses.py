"""Pure loss functions: tensors in, (loss, metrics) out, nothing else touched."""

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


def _off_diagonal(matrix: torch.Tensor) -> torch.Tensor:
    n = matrix.shape[-1]
    mask = ~torch.eye(n, dtype=torch.bool, device=matrix.device)
    return matrix[..., mask]


def fb_loss(M: torch.Tensor, target_M: torch.Tensor, discount: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    """Forward-backward TD loss on the N x N measure matrices.

    ``M[k, i, j] = F_k(s_i, a_i, z_i)^T B(s'_j)`` for each ensemble member; ``target_M[i, j]`` is the
    aggregated target ``F'(s'_i, a'_i, z_i)^T B'(s'_j)`` (no gradient). Off-diagonal entries are fitted
    to the discounted target (samples from the data distribution); the diagonal is pushed up (the
    positives: s'_i follows (s_i, a_i)). Summed over the ensemble.
    """
    target = (discount.view(1, -1, 1) * target_M.detach()).expand_as(M)
    off_diag = 0.5 * (_off_diagonal(M) - _off_diagonal(target)).pow(2).mean(-1)
    diag = torch.diagonal(M, dim1=-2, dim2=-1).mean(-1)
    loss = (off_diag - diag).sum()
    return loss, {"fb_offdiag": off_diag.mean().item(), "fb_diag": diag.mean().item()}


def orthonormality_loss(B: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    """Unbiased estimate (up to a constant) of ||E[B B^T] - I||^2 from a batch (N, d), Meta Motivo's scale."""
    cov = B @ B.T
    off_diag = 0.5 * _off_diagonal(cov).pow(2).mean()
    diag = torch.diagonal(cov).mean()
    return off_diag - diag, {"ortho_offdiag": off_diag.item(), "ortho_diag": diag.item()}


def actor_loss(Q: torch.Tensor, pessimism: float) -> tuple[torch.Tensor, dict[str, float]]:
    """Q is (K, N): the ensemble's F_k(s, pi(s, z), z)^T z; maximise its pessimistic aggregate."""
    q = aggregate(Q, pessimism)
    return -q.mean(), {"actor_q": q.mean().item()}
