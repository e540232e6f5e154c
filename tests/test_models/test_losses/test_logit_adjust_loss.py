"""Tests of LogitAdjustLoss (== Balanced Softmax)."""
import math

import pytest
import torch
import torch.nn.functional as F

from mmlt.models.losses import LogitAdjustLoss
from mmlt.registry import MODELS

COUNTS = [500, 120, 30, 6]


def _slow_balanced_softmax(logits, labels, counts, tau=1.0):
    """Per-sample -log(n_y^tau e^{x_y} / sum_c n_c^tau e^{x_c}) in Python
    floats: the Balanced Softmax form of Ren et al. (the prior's normaliser
    cancels)."""
    losses = []
    for row, label in zip(logits.tolist(), labels.tolist()):
        terms = [n**tau * math.exp(x) for n, x in zip(counts, row)]
        losses.append(-math.log(terms[label] / sum(terms)))
    return torch.tensor(losses, dtype=torch.float64)


def _batch(num_samples=6, seed=0, dtype=torch.float64):
    generator = torch.Generator().manual_seed(seed)
    logits = 3 * torch.randn(
        num_samples, len(COUNTS), generator=generator, dtype=dtype)
    labels = torch.randint(len(COUNTS), (num_samples, ), generator=generator)
    return logits, labels


@pytest.mark.parametrize('tau', [1.0, 0.5, 2.0])
def test_matches_balanced_softmax_closed_form(tau):
    logits, labels = _batch()
    loss = LogitAdjustLoss(COUNTS, tau=tau, reduction='none')
    expected = _slow_balanced_softmax(logits, labels, COUNTS, tau)
    torch.testing.assert_close(loss(logits, labels), expected)
    mean_loss = LogitAdjustLoss(COUNTS, tau=tau)(logits, labels)
    torch.testing.assert_close(mean_loss, expected.mean())


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_gradient_is_softmax_of_adjusted_logits_minus_onehot(dtype):
    logits, labels = _batch(dtype=dtype)
    logits.requires_grad_(True)
    LogitAdjustLoss(COUNTS, reduction='sum')(logits, labels).backward()
    prior = torch.tensor(COUNTS, dtype=torch.float64) / sum(COUNTS)
    expected = torch.softmax(logits.detach().double() + prior.log(), dim=1)
    expected -= F.one_hot(labels, len(COUNTS))
    assert logits.grad.dtype == dtype
    torch.testing.assert_close(
        logits.grad.double(), expected, rtol=1e-5, atol=1e-6)


def test_tau_zero_and_uniform_counts_are_plain_cross_entropy():
    logits, labels = _batch()
    plain = F.cross_entropy(logits, labels)
    torch.testing.assert_close(
        LogitAdjustLoss(COUNTS, tau=0)(logits, labels), plain)
    torch.testing.assert_close(
        LogitAdjustLoss([7, 7, 7, 7])(logits, labels), plain)


def test_scaling_counts_does_not_change_loss():
    logits, labels = _batch()
    torch.testing.assert_close(
        LogitAdjustLoss(COUNTS)(logits, labels),
        LogitAdjustLoss([10 * n for n in COUNTS])(logits, labels))


def test_soft_labels_one_hot_and_mixup():
    logits, labels = _batch()
    loss = LogitAdjustLoss(COUNTS, reduction='none')
    one_hot = F.one_hot(labels, len(COUNTS)).double()
    torch.testing.assert_close(loss(logits, one_hot), loss(logits, labels))
    # Mixup: lam * L(y1) + (1 - lam) * L(y2), the loss is linear in the target.
    other = labels.flip(0)
    lam = 0.3
    mixed = lam * one_hot + (1 - lam) * F.one_hot(other, len(COUNTS)).double()
    torch.testing.assert_close(
        loss(logits, mixed),
        lam * loss(logits, labels) + (1 - lam) * loss(logits, other))


def test_label_smoothing():
    logits, labels = _batch()
    eps = 0.1
    smoothed = LogitAdjustLoss(
        COUNTS, label_smoothing=eps, reduction='none')(logits, labels)
    prior = torch.tensor(COUNTS, dtype=torch.float64) / sum(COUNTS)
    log_prob = torch.log_softmax(logits + prior.log(), dim=1)
    expected = -(1 - eps) * log_prob.gather(1, labels[:, None]).squeeze(1) \
        - eps * log_prob.mean(dim=1)
    torch.testing.assert_close(smoothed, expected)


def test_weight_avg_factor_reduction_and_loss_weight():
    logits, labels = _batch()
    per_sample = _slow_balanced_softmax(logits, labels, COUNTS)
    weight = torch.tensor([1.0, 0.0, 2.0, 0.5, 1.0, 3.0], dtype=torch.float64)
    loss = LogitAdjustLoss(COUNTS, loss_weight=0.25)
    torch.testing.assert_close(
        loss(logits, labels, weight=weight),
        0.25 * (weight * per_sample).mean())
    torch.testing.assert_close(
        loss(logits, labels, weight=weight, avg_factor=4.0),
        0.25 * (weight * per_sample).sum() / 4.0)
    torch.testing.assert_close(
        loss(logits, labels, reduction_override='sum'),
        0.25 * per_sample.sum())
    torch.testing.assert_close(
        loss(logits, labels, reduction_override='none'), 0.25 * per_sample)
    with pytest.raises(ValueError, match='avg_factor'):
        loss(logits, labels, avg_factor=2.0, reduction_override='sum')
    with pytest.raises(ValueError, match='weight'):
        loss(logits, labels, weight=weight[:3])


def test_counts_set_later_and_state_dict_roundtrip():
    logits, labels = _batch()
    loss = LogitAdjustLoss()
    with pytest.raises(RuntimeError, match='set_class_counts'):
        loss(logits, labels)
    loss.set_class_counts(torch.tensor(COUNTS))
    value = loss(logits, labels)
    torch.testing.assert_close(
        value,
        _slow_balanced_softmax(logits, labels, COUNTS).mean())
    state = loss.state_dict()
    assert set(state) == {'log_prior'}
    # A loss built without counts takes the prior (and its size) from the
    # checkpoint.
    restored = LogitAdjustLoss()
    restored.load_state_dict(state)
    assert restored.num_classes == len(COUNTS)
    torch.testing.assert_close(restored(logits, labels), value)


def test_registry_names():
    built = MODELS.build(dict(type='mmlt.BalancedSoftmaxLoss', class_counts=COUNTS))
    assert type(built) is LogitAdjustLoss
    assert MODELS.get('LogitAdjustLoss') is LogitAdjustLoss


def test_bad_inputs_raise_value_error():
    logits, labels = _batch()
    loss = LogitAdjustLoss(COUNTS)
    with pytest.raises(ValueError, match=r'5 classes.*prior has 4'):
        loss(torch.zeros(2, 5), torch.zeros(2, dtype=torch.long))
    # Label values are not read on the host (no sync per step); torch's
    # cross-entropy refuses them on the CPU (a device assert on a GPU).
    with pytest.raises((IndexError, RuntimeError), match='out of bounds'):
        loss(logits, torch.tensor([0, 1, 2, 3, 4, 0]))
    with pytest.raises(ValueError, match='5 entries'):
        loss(logits, labels[:5])
    with pytest.raises(ValueError, match=r'\(N, C\) logits'):
        loss(logits[0], labels[:1])
    with pytest.raises(ValueError, match='soft label'):
        loss(logits, torch.zeros(6, 3))
    # A non-finite logit (an AMP overflow) gives a non-finite loss, which the
    # optimizer wrapper skips, rather than an exception that ends the run.
    bad = logits.clone()
    bad[2, 1] = float('nan')
    assert torch.isnan(loss(bad, labels))
    with pytest.raises(ValueError, match=r'classes \[1\].*log\(0\)'):
        LogitAdjustLoss([5, 0, 3])
    with pytest.raises(ValueError, match='positive'):
        LogitAdjustLoss([5, -2, 3])
    with pytest.raises(ValueError, match='1-D'):
        LogitAdjustLoss([[5, 2]])
    with pytest.raises(ValueError, match='tau=-1'):
        LogitAdjustLoss(COUNTS, tau=-1)
    with pytest.raises(ValueError, match='reduction'):
        LogitAdjustLoss(COUNTS, reduction='avg')


def test_tau_zero_is_plain_cross_entropy_without_counts():
    logits = torch.randn(5, 4)
    labels = torch.tensor([0, 3, 1, 2, 2])
    loss = LogitAdjustLoss(tau=0.0)
    torch.testing.assert_close(
        loss(logits, labels), torch.nn.functional.cross_entropy(logits,
                                                                labels))
    with pytest.raises(RuntimeError, match='no class prior'):
        LogitAdjustLoss(tau=1.0)(logits, labels)
