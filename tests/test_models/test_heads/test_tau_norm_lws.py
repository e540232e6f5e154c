"""tau-normalisation and learnable weight scaling (Kang et al., ICLR 2020)
against hand-computed values."""
import math

import pytest
import torch

from mmlt.models.heads import LearnableWeightScaling, tau_normalize

# rows of norm 5 and 1
W = torch.tensor([[3., 0., 4.], [0., 1., 0.]])


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_tau_normalize_by_hand(dtype):
    weight = W.to(dtype)
    # tau 0: the classifier itself
    torch.testing.assert_close(tau_normalize(weight, 0.0), weight)
    # tau 1: unit rows
    unit = torch.tensor([[0.6, 0., 0.8], [0., 1., 0.]], dtype=dtype)
    torch.testing.assert_close(tau_normalize(weight, 1.0), unit)
    # tau 0.5: row 0 divided by sqrt(5), row 1 (norm 1) unchanged
    half = torch.tensor([[3 / math.sqrt(5), 0., 4 / math.sqrt(5)],
                         [0., 1., 0.]], dtype=dtype)
    torch.testing.assert_close(tau_normalize(weight, 0.5), half)
    # tau 2: row 0 divided by 25
    torch.testing.assert_close(
        tau_normalize(weight, 2.0)[0],
        torch.tensor([0.12, 0., 0.16], dtype=dtype))


def test_tau_as_a_float64_buffer_keeps_the_weight_dtype():
    tau = torch.tensor(1.0, dtype=torch.float64)
    out = tau_normalize(W, tau)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.norm(dim=1), torch.ones(2))


def test_tau_normalize_keeps_a_zero_row_zero():
    weight = torch.tensor([[0., 0., 0.], [1., 2., 2.]])
    out = tau_normalize(weight, 1.0)
    assert torch.isfinite(out).all()
    assert torch.equal(out[0], torch.zeros(3))
    torch.testing.assert_close(out[1], torch.tensor([1 / 3, 2 / 3, 2 / 3]))


def test_learnable_weight_scaling_starts_as_identity_and_learns_scales():
    scaling = LearnableWeightScaling(3)
    logits = torch.tensor([[1., -2., 3.], [0.5, 4., -1.]])
    assert torch.equal(scaling(logits), logits)
    with torch.no_grad():
        scaling.scales.copy_(torch.tensor([2., 0.5, -1.]))
    torch.testing.assert_close(
        scaling(logits), torch.tensor([[2., -1., -3.], [1., 2., 1.]]))
    # d/df_i sum(f * z) = sum over the batch of z_i
    scaling(logits).sum().backward()
    torch.testing.assert_close(scaling.scales.grad, logits.sum(0))
