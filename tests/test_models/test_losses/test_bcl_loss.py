"""Tests of BCLLoss against a slow loop, the class-averaging and
class-complement properties, and a real two-process gloo run."""
import math

import pytest
import torch
import torch.distributed as torch_dist
import torch.nn.functional as F

from mmlt.models.losses import BCLLoss as _BCLLoss
from mmlt.registry import MODELS

from dist_launch import init_gloo, run_two_ranks
from sample_major import SampleMajorBCLLoss as BCLLoss
from sample_major import SampleMajorSupConLoss as SupConLoss


def _slow_bcl(features, labels, prototypes, temperature):
    """Per-sample BCL losses by the paper's formula, one anchor at a time in
    Python floats. The contrast set is every batch view plus the prototypes;
    each denominator term of class c is divided by the number of class-c
    entries other than the anchor."""
    features = F.normalize(features.double(), dim=-1)
    prototypes = F.normalize(prototypes.double(), dim=-1)
    if features.dim() == 2:
        features = features[:, None]
    num_samples, num_views, _ = features.shape
    entries = [(features[n, v], int(labels[n]), ('view', n, v))
               for n in range(num_samples) for v in range(num_views)]
    entries += [(prototypes[c], c, ('prototype', c))
                for c in range(len(prototypes))]
    per_sample = []
    for n in range(num_samples):
        anchor_label = int(labels[n])
        view_losses = []
        for v in range(num_views):
            others = [e for e in entries if e[2] != ('view', n, v)]
            class_size = {}
            for _, label, _ in others:
                class_size[label] = class_size.get(label, 0) + 1

            def similarity(z):
                return float(features[n, v] @ z) / temperature

            denominator = sum(
                math.exp(similarity(z)) / class_size[label]
                for z, label, _ in others)
            log_probs = [
                similarity(z) - math.log(denominator) for z, label, _ in others
                if label == anchor_label
            ]
            view_losses.append(-sum(log_probs) / len(log_probs))
        per_sample.append(sum(view_losses) / len(view_losses))
    return torch.tensor(per_sample, dtype=torch.float64)


def _batch(num_samples, num_views, dim=5, num_classes=4, seed=0):
    generator = torch.Generator().manual_seed(seed)
    shape = (num_samples, num_views, dim) if num_views else (num_samples, dim)
    features = F.normalize(
        torch.randn(shape, generator=generator, dtype=torch.float64), dim=-1)
    labels = torch.randint(num_classes, (num_samples, ), generator=generator)
    prototypes = F.normalize(
        torch.randn(
            num_classes, dim, generator=generator, dtype=torch.float64),
        dim=-1)
    return features, labels, prototypes


@pytest.mark.parametrize('num_views', [0, 2, 3])
def test_matches_slow_loop(num_views):
    features, labels, prototypes = _batch(7, num_views)
    expected = _slow_bcl(features, labels, prototypes, 0.1)
    loss = BCLLoss(reduction='none')
    torch.testing.assert_close(
        loss(features, labels, prototypes=prototypes), expected)
    torch.testing.assert_close(
        BCLLoss(loss_weight=2.0)(features, labels, prototypes=prototypes),
        2.0 * expected.mean())


def test_single_sample_is_cross_entropy_over_prototypes():
    # One view of one sample: every class has one contrast entry (the anchor's
    # own class: its prototype; the anchor itself is excluded), so BCL is the
    # softmax cross-entropy of the prototype similarities.
    features, labels, prototypes = _batch(1, 0, seed=1)
    temperature = 0.2
    expected = F.cross_entropy(features @ prototypes.T / temperature, labels)
    torch.testing.assert_close(
        BCLLoss(temperature=temperature)(
            features, labels, prototypes=prototypes), expected)


def test_class_averaging_makes_duplicates_one_term():
    """Duplicating a class k times leaves the other anchors' losses unchanged
    when all its entries (views and prototype) are the same vector: the class
    contributes one averaged term, whatever its frequency."""
    generator = torch.Generator().manual_seed(2)
    dim = 4
    prototypes = F.normalize(
        torch.randn(3, dim, generator=generator, dtype=torch.float64), dim=-1)
    shared = prototypes[1]
    others = F.normalize(
        torch.randn(5, 2, dim, generator=generator, dtype=torch.float64),
        dim=-1)
    other_labels = torch.tensor([0, 0, 2, 0, 2])
    duplicate = shared.expand(1, 2, dim)
    bcl = BCLLoss(reduction='none')
    supcon = SupConLoss(temperature=0.1, reduction='none')
    base_bcl = supcon_base = None
    for copies in range(1, 5):
        features = torch.cat([others, duplicate.expand(copies, 2, dim)])
        labels = torch.cat(
            [other_labels, torch.ones(copies, dtype=torch.long)])
        bcl_loss = bcl(features, labels, prototypes=prototypes)[:5]
        supcon_loss = supcon(features, labels)[:5]
        if base_bcl is None:
            base_bcl, supcon_base = bcl_loss, supcon_loss
            continue
        torch.testing.assert_close(bcl_loss, base_bcl)
        # Without averaging (SupCon) the duplicated class weighs more.
        assert (supcon_loss >= supcon_base).all()
        assert (supcon_loss - supcon_base).sum() > 1e-2


def test_label_and_batch_permutation_invariance():
    features, labels, prototypes = _batch(8, 2, seed=3)
    loss = BCLLoss(reduction='none')
    reference = loss(features, labels, prototypes=prototypes)
    relabel = torch.tensor([2, 0, 3, 1])
    permuted_prototypes = torch.empty_like(prototypes)
    permuted_prototypes[relabel] = prototypes
    torch.testing.assert_close(
        loss(features, relabel[labels], prototypes=permuted_prototypes),
        reference)
    order = torch.randperm(8, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(
        loss(features[order], labels[order], prototypes=prototypes),
        reference[order])


def test_stable_and_finite_at_small_temperature_in_float32():
    features, labels, prototypes = _batch(6, 2, seed=4)
    expected = _slow_bcl(features, labels, prototypes, 0.005).mean().item()
    features32 = features.float().requires_grad_(True)
    prototypes32 = prototypes.float().requires_grad_(True)
    loss = BCLLoss(temperature=0.005)(
        features32, labels, prototypes=prototypes32)
    loss.backward()
    assert abs(loss.item() - expected) <= 1e-4 * max(1.0, abs(expected))
    assert torch.isfinite(features32.grad).all()
    assert torch.isfinite(prototypes32.grad).all()


def test_gradcheck_features_and_prototypes_float64():
    features, labels, prototypes = _batch(3, 2, dim=3, num_classes=3, seed=5)
    features = (1.3 * features).requires_grad_(True)
    prototypes = (0.7 * prototypes).requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda x, w: BCLLoss(temperature=0.5)(x, labels, prototypes=w),
        (features, prototypes))


def test_weight_avg_factor_and_registry():
    features, labels, prototypes = _batch(5, 2, seed=6)
    per_sample = _slow_bcl(features, labels, prototypes, 0.07)
    built = MODELS.build(dict(type='mmlt.BCLLoss', temperature=0.07))
    assert type(built) is _BCLLoss and built.needs_prototypes
    loss = BCLLoss(temperature=0.07)
    weight = torch.tensor([1.0, 0.0, 2.0, 1.0, 0.5], dtype=torch.float64)
    torch.testing.assert_close(
        loss(features, labels, weight, prototypes=prototypes),
        (weight * per_sample).mean())
    torch.testing.assert_close(
        loss(features, labels, weight, 3.0, prototypes=prototypes),
        (weight * per_sample).sum() / 3.0)


def test_bad_inputs_raise_value_error():
    features, labels, prototypes = _batch(4, 2)
    loss = BCLLoss()
    with pytest.raises(ValueError, match=r'\(C, p\)'):
        loss(features, labels, prototypes=prototypes[0])
    with pytest.raises(ValueError, match='dimension 4 but features have 5'):
        loss(features, labels, prototypes=prototypes[:, :4])
    with pytest.raises(ValueError, match=r'\(V, N, p\)'):
        loss(features[None], labels, prototypes=prototypes)
    with pytest.raises(ValueError, match=r'expected \(4,\)'):
        loss(features, labels[:2], prototypes=prototypes)
    # No value is read on the host (no sync per step): non-finite inputs
    # make a non-finite loss for the optimizer wrapper to skip.
    bad = prototypes.clone()
    bad[0, 0] = float('nan')
    assert torch.isnan(loss(features, labels, prototypes=bad))
    bad = features.clone()
    bad[0, 0, 0] = float('inf')
    assert not torch.isfinite(loss(bad, labels, prototypes=prototypes))
    with pytest.raises(ValueError, match='temperature=-0.1'):
        BCLLoss(temperature=-0.1)
    with pytest.raises(TypeError):
        loss(features, labels)  # prototypes are required


def _distributed_worker(rank: int, port: int) -> list:
    """Per case: the loss summed over ranks and the single-process value."""
    init_gloo(rank, port)
    totals = []
    try:
        for sizes, reduction in [((4, 4), 'mean'), ((2, 5), 'sum'),
                                 ((0, 3), 'sum')]:
            features, labels, prototypes = _batch(sum(sizes), 2, seed=7)
            start = sum(sizes[:rank])
            local = features[start:start + sizes[rank]].clone()
            local.requires_grad_(True)
            local_prototypes = prototypes.clone().requires_grad_(True)
            loss = BCLLoss(reduction=reduction)
            local_loss = loss(
                local,
                labels[start:start + sizes[rank]],
                prototypes=local_prototypes)
            local_loss.backward()

            full = features.clone().requires_grad_(True)
            full_prototypes = prototypes.clone().requires_grad_(True)
            reference = BCLLoss(
                reduction=reduction, gather_distributed=False)(
                    full, labels, prototypes=full_prototypes)
            reference.backward()
            # 'mean' on equal batches: the sums over ranks are W times the
            # global loss and gradients (DDP divides by W); 'sum': exact.
            scale = len(sizes) if reduction == 'mean' else 1
            total = local_loss.detach().clone()
            torch_dist.all_reduce(total)
            torch.testing.assert_close(total, scale * reference.detach())
            torch.testing.assert_close(
                local.grad, scale * full.grad[start:start + sizes[rank]])
            prototype_grad = local_prototypes.grad.clone()
            torch_dist.all_reduce(prototype_grad)
            torch.testing.assert_close(prototype_grad,
                                       scale * full_prototypes.grad)
            totals.append((total, scale * reference.detach()))
        return totals
    finally:
        torch_dist.destroy_process_group()


def test_two_process_gloo_matches_single_process(port):
    # port: a free port, from the fixture in tests/conftest.py.
    ranks = run_two_ranks(_distributed_worker, port)
    assert len(ranks[0]) == len(ranks[1]) == 3
    for (total_0, expected), (total_1, _) in zip(*ranks):
        assert torch.equal(total_0, total_1)
        torch.testing.assert_close(total_0, expected)
