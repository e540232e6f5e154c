"""Tests of SupConLoss against a slow loop over anchors, invariances, the
no-positive case and a real two-process gloo run."""
import math

import pytest
import torch
import torch.distributed as torch_dist
import torch.nn.functional as F

from mmlt.models.losses import SupConLoss as _SupConLoss
from mmlt.registry import MODELS

from dist_launch import init_gloo, run_two_ranks
from sample_major import SampleMajorSupConLoss as SupConLoss


def _slow_supcon(features,
                 labels,
                 temperature,
                 base_temperature=None,
                 contrast_mode='all'):
    """Per-sample SupCon losses by the paper's formula, one anchor at a time
    in Python floats; None for a sample none of whose views has a positive."""
    base_temperature = base_temperature or temperature
    features = F.normalize(features.double(), dim=-1)
    if features.dim() == 2:
        features = features[:, None]
    num_samples, num_views, _ = features.shape
    labels = labels.tolist()
    entries = [(n, v) for n in range(num_samples) for v in range(num_views)]
    anchor_views = num_views if contrast_mode == 'all' else 1
    per_sample = []
    for n in range(num_samples):
        view_losses = []
        for v in range(anchor_views):
            others = [(m, w) for m, w in entries if (m, w) != (n, v)]
            positives = [(m, w) for m, w in others if labels[m] == labels[n]]
            if not positives:
                continue

            def similarity(m, w):
                return float(features[n, v] @ features[m, w]) / temperature

            denominator = sum(math.exp(similarity(m, w)) for m, w in others)
            log_probs = [
                similarity(m, w) - math.log(denominator) for m, w in positives
            ]
            view_losses.append(-sum(log_probs) / len(log_probs) * temperature /
                               base_temperature)
        per_sample.append(
            sum(view_losses) / len(view_losses) if view_losses else None)
    return per_sample


def _mean_of_valid(per_sample):
    valid = [x for x in per_sample if x is not None]
    return sum(valid) / len(valid) if valid else 0.0


def _as_tensor(per_sample):
    return torch.tensor([0.0 if x is None else x for x in per_sample],
                        dtype=torch.float64)


def _batch(num_samples, num_views, dim=5, num_classes=3, seed=0):
    generator = torch.Generator().manual_seed(seed)
    shape = (num_samples, num_views, dim) if num_views else (num_samples, dim)
    features = F.normalize(
        torch.randn(shape, generator=generator, dtype=torch.float64), dim=-1)
    labels = torch.randint(num_classes, (num_samples, ), generator=generator)
    return features, labels


@pytest.mark.parametrize('num_views', [2, 3])
def test_multi_view_matches_slow_loop(num_views):
    features, labels = _batch(7, num_views)
    expected = _slow_supcon(features, labels, 0.1)
    loss = SupConLoss(temperature=0.1, reduction='none')
    torch.testing.assert_close(loss(features, labels), _as_tensor(expected))
    torch.testing.assert_close(
        SupConLoss(temperature=0.1)(features, labels),
        torch.tensor(_mean_of_valid(expected), dtype=torch.float64))


def test_single_view_anchors_without_positives_are_left_out():
    features, _ = _batch(6, 0)
    labels = torch.tensor([0, 1, 0, 2, 3, 0])  # 1, 2 and 3 have no positive
    expected = _slow_supcon(features, labels, 0.2)
    assert expected.count(None) == 3
    loss = SupConLoss(temperature=0.2, reduction='none')(features, labels)
    torch.testing.assert_close(loss, _as_tensor(expected))
    mean_loss = SupConLoss(temperature=0.2)(features, labels)
    # The mean runs over the three samples with positives only.
    torch.testing.assert_close(
        mean_loss, torch.tensor(_mean_of_valid(expected), dtype=torch.float64))


def test_contrast_mode_one_and_base_temperature():
    features, labels = _batch(6, 2, seed=1)
    expected = _slow_supcon(features, labels, 0.1, 0.07, 'one')
    loss = SupConLoss(
        temperature=0.1, base_temperature=0.07, contrast_mode='one')
    torch.testing.assert_close(
        loss(features, labels),
        torch.tensor(_mean_of_valid(expected), dtype=torch.float64))


def test_normalizes_inside_and_loss_weight_weight_avg_factor():
    features, labels = _batch(6, 2, seed=2)
    per_sample = _as_tensor(_slow_supcon(features, labels, 0.1))
    scaled = features * torch.tensor([3.0, 0.5, 2.0, 1.0, 4.0, 0.1],
                                     dtype=torch.float64)[:, None, None]
    loss = SupConLoss(temperature=0.1, loss_weight=0.5)
    torch.testing.assert_close(loss(scaled, labels), 0.5 * per_sample.mean())
    weight = torch.tensor([1.0, 2.0, 0.0, 1.0, 0.5, 1.0], dtype=torch.float64)
    torch.testing.assert_close(
        loss(features, labels, weight=weight),
        0.5 * (weight * per_sample).sum() / len(per_sample))
    torch.testing.assert_close(
        loss(features, labels, weight=weight, avg_factor=2.0),
        0.5 * (weight * per_sample).sum() / 2.0)
    torch.testing.assert_close(
        loss(features, labels, reduction_override='sum'),
        0.5 * per_sample.sum())


def test_label_and_batch_permutation_invariance():
    features, labels = _batch(8, 2, num_classes=4, seed=3)
    loss = SupConLoss(temperature=0.1, reduction='none')
    reference = loss(features, labels)
    relabel = torch.tensor([2, 0, 3, 1])
    torch.testing.assert_close(loss(features, relabel[labels]), reference)
    order = torch.randperm(8, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(
        loss(features[order], labels[order]), reference[order])


def test_no_positive_gives_zero_with_gradient_and_no_nan():
    features, _ = _batch(4, 0)
    features.requires_grad_(True)
    loss = SupConLoss()(features, torch.arange(4))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(features.grad, torch.zeros_like(features))
    single = torch.randn(1, 5, requires_grad=True)
    loss = SupConLoss()(single, torch.tensor([0]))
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert torch.isfinite(single.grad).all()


def test_small_temperature_is_stable_in_float32():
    features, labels = _batch(6, 2, seed=4)
    temperature = 0.005  # logits up to 200: exp overflows float32 naively
    expected = _mean_of_valid(_slow_supcon(features, labels, temperature))
    loss = SupConLoss(temperature=temperature)(features.float(), labels)
    assert loss.dtype == torch.float32
    assert torch.isfinite(loss)
    assert abs(loss.item() - expected) <= 1e-4 * max(1.0, abs(expected))


def test_gradcheck_float64():
    features, labels = _batch(4, 2, dim=3, num_classes=2, seed=5)
    features = (features * 1.5).requires_grad_(True)  # not unit: normalize
    assert torch.autograd.gradcheck(
        lambda x: SupConLoss(temperature=0.5)(x, labels), (features, ))


def test_registry_build():
    loss = MODELS.build(dict(type='mmlt.SupConLoss', temperature=0.2))
    assert isinstance(loss, _SupConLoss) and loss.temperature == 0.2


def test_bad_inputs_raise_value_error():
    features, labels = _batch(4, 2)
    loss = SupConLoss()
    with pytest.raises(ValueError, match=r'\(V, N, p\)'):
        loss(features[None], labels)
    with pytest.raises(ValueError, match=r'expected \(4,\)'):
        loss(features, labels[:3])
    with pytest.raises(ValueError, match='integer'):
        loss(features, labels.double())
    # No value is read on the host: a non-finite feature (an AMP overflow)
    # makes a non-finite loss for the optimizer wrapper to skip.
    bad = features.clone()
    bad[1, 0, 2] = float('nan')
    assert torch.isnan(loss(bad, labels))
    with pytest.raises(ValueError, match='temperature=0'):
        SupConLoss(temperature=0)
    with pytest.raises(ValueError, match='base_temperature=-1'):
        SupConLoss(base_temperature=-1)
    with pytest.raises(ValueError, match='contrast_mode'):
        SupConLoss(contrast_mode='two')


def _distributed_worker(rank: int, port: int) -> dict:
    """Per case the loss summed over ranks and the single-process value;
    the loss and gradient when no rank has a positive."""
    init_gloo(rank, port)
    totals = []
    try:
        cases = [
            # (sizes per rank, views, reduction)
            ((5, 5), 2, 'mean'),  # equal batches: DDP mean == global mean
            ((3, 6), 2, 'sum'),  # unequal: sums add up exactly
            ((4, 3), 0, 'sum'),  # single view, some anchors lack positives
            ((0, 4), 2, 'mean'),  # an empty rank
            ((1, 0), 0, 'mean'),  # one entry in all: nothing to contrast
        ]
        for sizes, num_views, reduction in cases:
            features, labels = _batch(sum(sizes), num_views, seed=sum(sizes))
            start = sum(sizes[:rank])
            local = features[start:start + sizes[rank]].clone()
            local.requires_grad_(True)
            loss = SupConLoss(temperature=0.1, reduction=reduction)
            local_loss = loss(local, labels[start:start + sizes[rank]])
            local_loss.backward()

            full = features.clone().requires_grad_(True)
            reference = SupConLoss(
                temperature=0.1, reduction=reduction,
                gather_distributed=False)(full, labels)
            reference.backward()
            world_size = len(sizes)
            total = local_loss.detach().clone()
            torch_dist.all_reduce(total)
            # 'mean': sum over ranks of per-rank means is W * global mean and
            # the local gradient is W * the global gradient; 'sum': exact.
            scale = world_size if reduction == 'mean' else 1
            if min(sizes) == 0:
                # The empty rank's mean is 0; the other rank's is global.
                scale = 1
            torch.testing.assert_close(total, scale * reference.detach())
            torch.testing.assert_close(
                local.grad, scale * full.grad[start:start + sizes[rank]])
            totals.append((total, scale * reference.detach()))

        # No rank has a positive: zero loss, zero gradient and no deadlock in
        # the backward all-reduce.
        single = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
        loss = SupConLoss()(single, torch.tensor([2 * rank, 2 * rank + 1]))
        assert loss.item() == 0.0
        loss.backward()
        assert torch.equal(single.grad, torch.zeros_like(single))
        return dict(
            totals=totals, no_positive=(loss.detach(), single.grad))
    finally:
        torch_dist.destroy_process_group()


def test_two_process_gloo_matches_single_process(port):
    # port: a free port, from the fixture in tests/conftest.py.
    ranks = run_two_ranks(_distributed_worker, port)
    for rank in ranks:
        assert len(rank['totals']) == 5
        loss, grad = rank['no_positive']
        assert loss.item() == 0.0 and not grad.any()
    for (total_0, expected), (total_1, _) in zip(ranks[0]['totals'],
                                                  ranks[1]['totals']):
        assert torch.equal(total_0, total_1)
        torch.testing.assert_close(total_0, expected)
