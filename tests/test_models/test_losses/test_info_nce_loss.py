"""InfoNCE, DCL and ProtoNCE against slow loops in float64."""
import io
import math

import pytest
import torch
import torch.nn.functional as F

from mmlt.models.losses import (DecoupledContrastiveLoss, InfoNCELoss,
                                ProtoNCELoss)
from mmlt.models.losses.info_nce_loss import info_nce
from mmlt.models.losses.proto_nce_loss import (proto_nce,
                                               sample_negative_prototypes)
from mmlt.registry import MODELS

TAU = 0.2


def unit(*shape, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return F.normalize(
        torch.randn(*shape, generator=generator, dtype=torch.float64), dim=-1)


def dot(a, b):
    return sum(float(x) * float(y) for x, y in zip(a, b))


def slow_info_nce(queries, keys, negatives, in_batch, decoupled, tau):
    losses = []
    for i, q in enumerate(queries):
        positive = math.exp(dot(q, keys[i]) / tau)
        denominator = 0.0 if decoupled else positive
        for n in (negatives if negatives is not None else []):
            denominator += math.exp(dot(q, n) / tau)
        if in_batch:
            for j, k in enumerate(keys):
                if j != i:
                    denominator += math.exp(dot(q, k) / tau)
        losses.append(-math.log(positive / denominator))
    return torch.tensor(losses, dtype=torch.float64)


@pytest.mark.parametrize('use_queue, in_batch', [(True, False), (False, True),
                                                 (True, True)])
@pytest.mark.parametrize('decoupled', [False, True])
def test_info_nce_and_dcl_match_loop(use_queue, in_batch, decoupled):
    queries, keys, queue = unit(
        6, 5, seed=1), unit(
            6, 5, seed=2), unit(
                9, 5, seed=3)
    negatives = queue if use_queue else None
    loss_cls = DecoupledContrastiveLoss if decoupled else InfoNCELoss
    loss_fn = loss_cls(
        temperature=TAU, in_batch_negatives=in_batch, reduction='none')
    loss = loss_fn(queries, keys, negatives=negatives)
    expected = slow_info_nce(queries, keys, negatives, in_batch, decoupled,
                             TAU)
    torch.testing.assert_close(loss, expected)
    mean = loss_cls(
        temperature=TAU, in_batch_negatives=in_batch)(
            queries, keys, negatives=negatives)
    torch.testing.assert_close(mean, expected.mean())


def test_info_nce_matches_moco_logits_cross_entropy():
    # MoCo's form: CE over [l_pos, l_neg] with the positive at index 0.
    queries, keys, queue = unit(
        4, 3, seed=4), unit(
            4, 3, seed=5), unit(
                7, 3, seed=6)
    logits = torch.cat(
        [(queries * keys).sum(1, keepdim=True), queries @ queue.T],
        dim=1) / TAU
    expected = F.cross_entropy(logits, torch.zeros(4, dtype=torch.long))
    loss = InfoNCELoss(
        temperature=TAU, in_batch_negatives=False)(
            queries, keys, negatives=queue)
    torch.testing.assert_close(loss, expected)


def test_info_nce_normalizes_and_weights():
    queries, keys = unit(5, 4, seed=7), unit(5, 4, seed=8)
    loss_fn = InfoNCELoss(temperature=TAU, loss_weight=2.0)
    torch.testing.assert_close(
        loss_fn(queries * 3.0, keys * 0.5), loss_fn(queries, keys))
    weight = torch.tensor([1., 0., 2., 0., 1.], dtype=torch.float64)
    per_sample = InfoNCELoss(temperature=TAU, reduction='none')(queries, keys)
    torch.testing.assert_close(
        loss_fn(queries, keys, weight=weight, avg_factor=4.0),
        2.0 * (per_sample * weight).sum() / 4.0)


def test_info_nce_gradcheck():
    queries = unit(4, 3, seed=9).requires_grad_()
    keys = unit(4, 3, seed=10).requires_grad_()
    queue = unit(5, 3, seed=11)
    for loss_cls in (InfoNCELoss, DecoupledContrastiveLoss):
        loss_fn = loss_cls(temperature=0.5)
        assert torch.autograd.gradcheck(
            lambda q, k, fn=loss_fn: fn(q, k, negatives=queue),
            (queries, keys))


def test_dcl_needs_a_negative_and_infonce_is_zero_without_one():
    query, key = unit(1, 3, seed=12), unit(1, 3, seed=13)
    with pytest.raises(ValueError, match='at least one negative'):
        DecoupledContrastiveLoss()(query, key)
    assert float(InfoNCELoss()(query, key)) == 0.0


@pytest.mark.parametrize('kwargs, inputs, message', [
    (dict(temperature=0), None, 'temperature'),
    (dict(reduction='avg'), None, 'reduction'),
    (dict(), (torch.zeros(3, 4), torch.zeros(3, 5)), 'target'),
    (dict(), (torch.zeros(3), torch.zeros(3)), r'\(N, p\)'),
])
def test_info_nce_bad_input(kwargs, inputs, message):
    with pytest.raises(ValueError, match=message):
        loss_fn = InfoNCELoss(**kwargs)
        loss_fn(*inputs)


# ---------------------------------------------------------------------------
# ProtoNCE
# ---------------------------------------------------------------------------


def slow_proto_nce(features,
                   prototypes,
                   concentrations,
                   assignments,
                   negatives=None):
    """(1/M) sum_m -log(exp(v.c_s/phi_s) / sum_j exp(v.c_j/phi_j)), looped."""
    losses = []
    for i, v in enumerate(features):
        total = 0.0
        for m, (centers, phi) in enumerate(zip(prototypes, concentrations)):
            s = int(assignments[m][i])
            candidates = (
                range(len(centers)) if negatives is None else [s] +
                [int(j) for j in negatives[m][i]])
            denominator = sum(
                math.exp(dot(v, centers[j]) / float(phi[j]))
                for j in candidates)
            total += -math.log(
                math.exp(dot(v, centers[s]) / float(phi[s])) / denominator)
        losses.append(total / len(prototypes))
    return torch.tensor(losses, dtype=torch.float64)


def clustering(num_clusters=(3, 5), num_data=20, dim=4, seed=0):
    generator = torch.Generator().manual_seed(seed)
    prototypes = [unit(k, dim, seed=seed + k) for k in num_clusters]
    concentrations = [
        0.05 + torch.rand(k, generator=generator, dtype=torch.float64)
        for k in num_clusters
    ]
    assignments = [
        torch.randint(0, k, (num_data, ), generator=generator)
        for k in num_clusters
    ]
    return prototypes, concentrations, assignments


def loaded_loss(num_clusters=(3, 5), num_data=20, **kwargs):
    loss_fn = ProtoNCELoss(num_clusters=num_clusters, **kwargs).double()
    prototypes, concentrations, assignments = clustering(
        num_clusters, num_data)
    loss_fn.set_prototypes(prototypes, concentrations, assignments, epoch=3)
    return loss_fn, prototypes, concentrations, assignments


def test_proto_nce_all_prototypes_matches_loop():
    loss_fn, prototypes, concentrations, assignments = loaded_loss(
        reduction='none')
    features = unit(6, 4, seed=20)
    sample_idx = torch.tensor([0, 5, 19, 5, 7, 12])
    loss = loss_fn(features, sample_idx)
    batch_assignments = [a[sample_idx] for a in assignments]
    expected = slow_proto_nce(features, prototypes, concentrations,
                              batch_assignments)
    torch.testing.assert_close(loss, expected)
    assert loss_fn.clustering_epoch.item() == 3


def test_proto_nce_sampled_negatives_match_loop():
    prototypes, concentrations, assignments = clustering((6, 8), 5)
    features = unit(5, 4, seed=21)
    # proto_nce draws each clustering's negatives in turn from the generator:
    # the same draws, made here, give the loop's negatives.
    generator = torch.Generator().manual_seed(0)
    negatives = [
        sample_negative_prototypes(a, k, 3, generator)
        for a, k in zip(assignments, (6, 8))
    ]
    loss = proto_nce(
        features,
        prototypes,
        concentrations,
        assignments,
        num_negatives=3,
        generator=torch.Generator().manual_seed(0))
    expected = slow_proto_nce(features, prototypes, concentrations,
                              assignments, negatives)
    torch.testing.assert_close(loss, expected)


def test_sampled_negatives_are_distinct_uniform_and_exclude_positive():
    generator = torch.Generator().manual_seed(1)
    positive = torch.tensor([0, 3, 3, 9] * 500)
    negatives = sample_negative_prototypes(positive, 10, 4, generator)
    assert negatives.shape == (2000, 4)
    assert not (negatives == positive[:, None]).any()
    assert all(len(set(row)) == 4 for row in negatives.tolist())
    # each of the 9 others is drawn with probability 4/9 per row
    rows = positive == 3
    frequency = torch.bincount(negatives[rows].flatten(), minlength=10) / 1000
    others = [j for j in range(10) if j != 3]
    assert (frequency[others] - 4 / 9).abs().max() < 0.06


def test_sampled_proto_nce_with_all_others_equals_all_prototypes():
    loss_all, *_ = loaded_loss(num_clusters=(4, 6))
    loss_sampled, *_ = loaded_loss(num_clusters=(4, 6), num_negatives=5)
    features = unit(8, 4, seed=22)
    sample_idx = torch.arange(8)
    torch.testing.assert_close(
        loss_sampled(features, sample_idx), loss_all(features, sample_idx))


def test_sampled_proto_nce_is_a_lower_denominator():
    # fewer negatives: every sample's loss is at most the all-prototype loss
    loss_all, *_ = loaded_loss(num_clusters=(8, 9), reduction='none')
    loss_sampled, *_ = loaded_loss(
        num_clusters=(8, 9), num_negatives=3, reduction='none')
    features = unit(10, 4, seed=23)
    sample_idx = torch.arange(10)
    assert (loss_sampled(features, sample_idx)
            <= loss_all(features, sample_idx) + 1e-12).all()


def test_proto_nce_zero_and_connected_before_clustering():
    loss_fn = ProtoNCELoss(num_clusters=(3, 4))
    assert not loss_fn.has_prototypes
    features = unit(4, 5, seed=24).requires_grad_()
    loss = loss_fn(features, torch.arange(4))
    assert float(loss.detach()) == 0.0
    loss.backward()
    torch.testing.assert_close(features.grad, torch.zeros_like(features))


def test_proto_nce_gradcheck_and_concentration_scaling():
    loss_fn, *_ = loaded_loss()
    features = unit(5, 4, seed=25).requires_grad_()
    sample_idx = torch.tensor([1, 2, 3, 4, 5])
    assert torch.autograd.gradcheck(lambda v: loss_fn(v, sample_idx),
                                    (features, ))
    # halving every phi is the same as doubling the features' logits
    halved = ProtoNCELoss(num_clusters=(3, 5)).double()
    halved.set_prototypes(*[[t.clone() for t in part]
                            for part in clustering()])
    halved.concentrations /= 2
    prototypes, concentrations, assignments = clustering()
    expected = proto_nce(features.detach() * 2, prototypes, concentrations,
                         [a[sample_idx] for a in assignments]).mean()
    torch.testing.assert_close(halved(features.detach(), sample_idx), expected)


def test_state_dict_round_trip_resizes_buffers():
    loss_fn, prototypes, concentrations, assignments = loaded_loss()
    buffer = io.BytesIO()
    torch.save(loss_fn.state_dict(), buffer)
    buffer.seek(0)
    fresh = ProtoNCELoss(num_clusters=(3, 5)).double()
    fresh.load_state_dict(torch.load(buffer))
    assert fresh.has_prototypes and fresh.clustering_epoch.item() == 3
    for name in ('prototypes', 'concentrations', 'assignments'):
        assert torch.equal(getattr(fresh, name), getattr(loss_fn, name))
    stored = fresh.get_prototypes()
    torch.testing.assert_close(stored[1]['prototypes'], prototypes[1])
    assert torch.equal(stored[0]['assignments'], assignments[0])
    wrong = ProtoNCELoss(num_clusters=(3, 4))
    with pytest.raises(RuntimeError, match='do not match'):
        wrong.load_state_dict(loss_fn.state_dict())


def test_set_prototypes_validation():
    loss_fn = ProtoNCELoss(num_clusters=(3, 5))
    prototypes, concentrations, assignments = clustering()
    with pytest.raises(ValueError, match='expected 2 of each'):
        loss_fn.set_prototypes(prototypes[:1], concentrations[:1],
                               assignments[:1])
    bad = [concentrations[0], -concentrations[1]]
    with pytest.raises(ValueError, match='positive'):
        loss_fn.set_prototypes(prototypes, bad, assignments)
    bad = [assignments[0], assignments[1] + 5]
    with pytest.raises(ValueError, match=r'in \[0, 4\]'):
        loss_fn.set_prototypes(prototypes, concentrations, bad)
    loss_fn.set_prototypes(prototypes, concentrations, assignments)
    # Indices are not read on the host (no sync per step); indexing refuses
    # an index outside the clustered set.
    with pytest.raises((IndexError, RuntimeError), match='out of bounds'):
        loss_fn(unit(2, 4, seed=1).float(), torch.tensor([0, 20]))
    with pytest.raises(ValueError, match='dimensions'):
        loss_fn(unit(2, 3, seed=1).float(), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match='num_clusters'):
        ProtoNCELoss(num_clusters=(1, 5))


def test_registered_under_mmlt_scope():
    for name in ('InfoNCELoss', 'DecoupledContrastiveLoss', 'ProtoNCELoss'):
        assert MODELS.get(name) is not None
    loss_fn = MODELS.build(
        dict(type='mmlt.ProtoNCELoss', num_clusters=[3], num_negatives=2))
    assert loss_fn.num_clusters == (3, )


def test_float32_features_use_float32_buffers():
    loss_fn = ProtoNCELoss(num_clusters=(3, 5))
    prototypes, concentrations, assignments = clustering()
    loss_fn.set_prototypes(prototypes, concentrations, assignments)
    assert loss_fn.prototypes.dtype == torch.float32
    features = unit(4, 4, seed=3)
    loss32 = loss_fn(features.float(), torch.arange(4))
    expected = proto_nce(features, [F.normalize(p, dim=1) for p in prototypes],
                         concentrations, [a[:4] for a in assignments]).mean()
    assert float(loss32) == pytest.approx(float(expected), rel=1e-5)


def test_info_nce_function_shapes():
    loss = info_nce(unit(3, 2), unit(3, 2, seed=1), None, 0.5, True, False)
    assert loss.shape == (3, )
