import math

import pytest
import torch

from fastbfm.bfm.losses import actor_loss, aggregate, fb_loss, orthonormality_loss


def test_aggregate_knob_spans_mean_and_min():
    q = torch.tensor([[1.0, 5.0, -2.0], [3.0, 4.0, -6.0]])
    torch.testing.assert_close(aggregate(q, 0.0), q.mean(0))
    torch.testing.assert_close(aggregate(q, 0.5), q.min(0).values)
    assert torch.all(aggregate(q, 1.0) < q.min(0).values)


def test_fb_loss_by_hand():
    M = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
    target = torch.tensor([[0.0, 1.0], [2.0, 0.0]])
    discount = torch.tensor([0.5, 0.5])
    loss, metrics = fb_loss(M, target, discount)
    # off-diagonal: (2 - 0.5)^2 and (3 - 1)^2, halved and averaged; diagonal mean (1 + 4)/2.
    expected = 0.5 * (1.5**2 + 2.0**2) / 2 - 2.5
    assert loss.item() == pytest.approx(expected)
    assert metrics["fb_diag"] == pytest.approx(2.5)


def test_fb_loss_sends_no_gradient_through_the_target():
    M = torch.randn(2, 4, 4, requires_grad=True)
    target = torch.randn(4, 4, requires_grad=True)
    loss, _ = fb_loss(M, target, torch.ones(4))
    loss.backward()
    assert target.grad is None and M.grad is not None


def test_orthonormality_loss_is_lowest_for_orthonormal_features():
    d, n = 4, 64
    # Rows of an orthogonal matrix scaled so that E[B B^T] = I over the batch of n = 16 d rows.
    q, _ = torch.linalg.qr(torch.randn(n, n))
    B_orth = q[:, :d] * math.sqrt(n)
    B_corr = B_orth.clone()
    B_corr[:, 1] = B_corr[:, 0]
    loss_orth, _ = orthonormality_loss(B_orth)
    loss_corr, _ = orthonormality_loss(B_corr)
    assert loss_orth.item() < loss_corr.item()


def test_actor_loss_maximises_the_pessimistic_value():
    Q = torch.tensor([[1.0, 2.0], [3.0, 0.0]], requires_grad=True)
    loss, metrics = actor_loss(Q, pessimism=0.5)
    assert loss.item() == pytest.approx(-0.5)
    assert metrics["actor_q"] == pytest.approx(0.5)
