import io

import pytest
import torch
import torch.nn.functional as F

from mmlt.models.vmf.vmf import estimate_kappa
from mmlt.models.vmf.vmf_estimator import VMFEstimator
from mmlt.registry import MODELS

from dist_launch import init_gloo, run_two_ranks

NUM_CLASSES, FEAT_DIM = 6, 5


def unit_batch(batch_size, seed, num_classes=NUM_CLASSES, feat_dim=FEAT_DIM):
    generator = torch.Generator().manual_seed(seed)
    # A per-class offset makes the classes concentrated (R well above 0).
    labels = torch.randint(0, num_classes, (batch_size, ), generator=generator)
    centers = torch.randn(num_classes, feat_dim, generator=generator) * 2
    features = centers[labels] + torch.randn(
        batch_size, feat_dim, generator=generator)
    return F.normalize(features, dim=1), labels


def naive_pooled(batches, num_classes=NUM_CLASSES, feat_dim=FEAT_DIM):
    """Per-class sum and count by a Python loop over samples, in float64."""
    sums = torch.zeros(num_classes, feat_dim, dtype=torch.float64)
    counts = torch.zeros(num_classes, dtype=torch.float64)
    for features, labels in batches:
        for feature, label in zip(features.double(), labels.tolist()):
            sums[label] += feature
            counts[label] += 1
    return sums, counts


def naive_vmf(sums, counts, method='banerjee'):
    mean_direction = torch.zeros_like(sums)
    resultant = torch.zeros(len(counts), dtype=torch.float64)
    kappa = torch.zeros(len(counts), dtype=torch.float64)
    for c in range(len(counts)):
        if counts[c] > 0 and sums[c].norm() > 0:
            mean = sums[c] / counts[c]
            resultant[c] = mean.norm()
            mean_direction[c] = mean / mean.norm()
            kappa[c] = estimate_kappa(
                resultant[c].item(), sums.shape[1], method=method)
    return mean_direction, kappa, resultant


@pytest.mark.parametrize('method', ['banerjee', 'official', 'mle'])
def test_pooled_estimate_matches_naive(method):
    estimator = MODELS.build(
        dict(
            type='mmlt.VMFEstimator',
            num_classes=NUM_CLASSES,
            feat_dim=FEAT_DIM,
            kappa_method=method))
    batches = [unit_batch(size, seed) for seed, size in enumerate([9, 4, 13])]
    for features, labels in batches:
        estimator.update(features, labels)
    sums, counts = naive_pooled(batches)
    got_sums, got_counts = estimator.pooled_statistics()
    torch.testing.assert_close(got_sums, sums, rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(got_counts, counts, rtol=0, atol=0)
    mean_direction, kappa, resultant = naive_vmf(sums, counts, method)
    torch.testing.assert_close(
        estimator.mean_direction(), mean_direction, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(
        estimator.resultant_length(), resultant, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(
        estimator.concentration(), kappa, rtol=1e-10, atol=1e-12)
    assert (kappa[counts > 0] > 0).all()


def test_parameters_follow_updates_in_the_requested_dtypes():
    """mu in the caller's dtype (float32 for the B x C x p product), kappa in
    float64; recomputed from the statistics on each call, so what a caller
    holds is never changed by a later update."""
    estimator = VMFEstimator(NUM_CLASSES, FEAT_DIM)
    estimator.update(*unit_batch(10, 0))
    mu32, kappa = estimator.vmf_parameters(torch.float32)
    assert mu32.dtype == torch.float32 and kappa.dtype == torch.float64
    held_mu, held_kappa = mu32.clone(), kappa.clone()
    for seed in (1, 2):
        estimator.update(*unit_batch(7, seed))
    assert torch.equal(mu32, held_mu) and torch.equal(kappa, held_kappa)
    fresh = VMFEstimator(NUM_CLASSES, FEAT_DIM)
    fresh.load_state_dict(estimator.state_dict())
    for dtype in (torch.float32, torch.float64):
        got, want = estimator.vmf_parameters(dtype), fresh.vmf_parameters(dtype)
        assert got[0].dtype == dtype
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    mu64, _ = estimator.vmf_parameters()
    torch.testing.assert_close(mu64.float(),
                               estimator.vmf_parameters(torch.float32)[0])


def test_epoch_window_swap_semantics():
    estimator = VMFEstimator(NUM_CLASSES, FEAT_DIM)
    a, b, c = (unit_batch(8, seed) for seed in (10, 11, 12))
    estimator.start_epoch(0)
    estimator.update(*a)
    torch.testing.assert_close(estimator.pooled_statistics(),
                               naive_pooled([a]))
    estimator.start_epoch(1)
    estimator.update(*b)
    torch.testing.assert_close(estimator.pooled_statistics(),
                               naive_pooled([a, b]))
    torch.testing.assert_close(
        (estimator.previous_sums, estimator.previous_counts),
        naive_pooled([a]))
    estimator.start_epoch(2)
    estimator.update(*c)
    torch.testing.assert_close(estimator.pooled_statistics(),
                               naive_pooled([b, c]))
    torch.testing.assert_close(estimator.mean_direction(),
                               naive_vmf(*naive_pooled([b, c]))[0])
    # A repeated start of the same epoch (second hook, resume) is a no-op.
    estimator.start_epoch(2)
    torch.testing.assert_close(estimator.pooled_statistics(),
                               naive_pooled([b, c]))
    estimator.swap()
    torch.testing.assert_close(estimator.pooled_statistics(),
                               naive_pooled([c]))
    torch.testing.assert_close(estimator.current_counts,
                               torch.zeros(NUM_CLASSES, dtype=torch.float64))


def test_ema_window_formula():
    momentum = 0.2
    estimator = VMFEstimator(
        NUM_CLASSES, FEAT_DIM, window='ema', ema_momentum=momentum)
    batches = [
        unit_batch(size, seed) for seed, size in enumerate([6, 9, 3, 8])
    ]
    for features, labels in batches:
        estimator.update(features, labels)
    estimator.start_epoch(5)  # no window to swap: nothing changes
    # Each sample weighs (1 - momentum) ** (later samples of its class).
    sums = torch.zeros(NUM_CLASSES, FEAT_DIM, dtype=torch.float64)
    weights = torch.zeros(NUM_CLASSES, dtype=torch.float64)
    for index, (features, labels) in enumerate(batches):
        for feature, label in zip(features.double(), labels.tolist()):
            later = sum(int((later_labels == label).sum())
                        for _, later_labels in batches[index + 1:])
            sums[label] += (1 - momentum)**later * feature
            weights[label] += (1 - momentum)**later
    torch.testing.assert_close(estimator.pooled_statistics(), (sums, weights))
    mean_direction, kappa, _ = naive_vmf(sums, weights)
    torch.testing.assert_close(estimator.mean_direction(), mean_direction)
    torch.testing.assert_close(estimator.concentration(), kappa)
    # Steady state: one sample of a class moves its mean by the EMA rule.
    steady = VMFEstimator(1, 3, window='ema', ema_momentum=momentum)
    z = F.normalize(torch.randn(400, 3), dim=1)
    mean = None
    for row in z:
        steady.update(row[None], torch.zeros(1, dtype=torch.long))
        mean = row.double() if mean is None else \
            (1 - momentum) * mean + momentum * row.double()
    sums, weights = steady.pooled_statistics()
    torch.testing.assert_close(sums[0] / weights[0], mean)


def test_empty_and_zero_norm_classes_are_uniform():
    estimator = VMFEstimator(4, 3)
    features = torch.tensor([[1., 0, 0], [-1., 0, 0], [0, 1., 0],
                             [0, 0.6, 0.8]])
    labels = torch.tensor([0, 0, 1, 1])  # class 0 cancels, 2 and 3 are empty
    estimator.update(features, labels)
    mean_direction = estimator.mean_direction()
    kappa = estimator.concentration()
    assert torch.equal(mean_direction[[0, 2, 3]],
                       torch.zeros(3, 3, dtype=torch.float64))
    assert torch.equal(kappa[[0, 2, 3]], torch.zeros(3, dtype=torch.float64))
    torch.testing.assert_close(mean_direction[1],
                               F.normalize(torch.tensor([0, 1.6, 0.8]),
                                           dim=0).double())
    assert 0 < kappa[1] < float('inf')
    # One sample: R = 1, kappa is clamped to the finite max_kappa.
    single = VMFEstimator(2, 3, max_kappa=50.0)
    single.update(features[:1], torch.tensor([1]))
    assert single.concentration().tolist() == [0.0, 50.0]


def test_batch_with_non_finite_rows_is_left_out_without_host_sync():
    """An overflowing AMP step is skipped by the optimizer wrapper; its batch
    must not reach the statistics either. Decided on the device."""
    estimator = VMFEstimator(NUM_CLASSES, FEAT_DIM)
    features, labels = unit_batch(10, 4)
    estimator.update(features, labels)
    before = estimator.pooled_statistics()
    poisoned = features.clone()
    poisoned[2, 1] = float('nan')
    poisoned[7, 0] = float('inf')
    estimator.update(poisoned, labels)
    after = estimator.pooled_statistics()
    assert torch.equal(before[0], after[0]) and torch.equal(before[1], after[1])
    assert torch.isfinite(estimator.mean_direction()).all()
    # A clean batch is added again.
    estimator.update(features, labels)
    torch.testing.assert_close(estimator.pooled_statistics(),
                               naive_pooled([(features, labels)] * 2))


def test_invalid_inputs_raise():
    estimator = VMFEstimator(NUM_CLASSES, FEAT_DIM)
    features, labels = unit_batch(4, 5)
    # Label values are not read on the host: index_add_ refuses them (a
    # device-side assert on CUDA).
    with pytest.raises((IndexError, RuntimeError), match='out of bounds'):
        estimator.update(features, torch.tensor([0, 1, 6, 2]))
    with pytest.raises(ValueError, match=r'\(B, 5\), got \(4, 3\)'):
        estimator.update(features[:, :3], labels)
    with pytest.raises(ValueError, match='integer'):
        estimator.update(features, labels.float())
    with pytest.raises(ValueError, match=r'shape \(4,\)'):
        estimator.update(features, labels[:3])
    for kwargs in (dict(window='step'), dict(kappa_method='exact'),
                   dict(max_kappa=float('inf')), dict(sync='broadcast'),
                   dict(ema_momentum=1.0)):
        with pytest.raises(ValueError, match=repr(list(kwargs.values())[0])):
            VMFEstimator(NUM_CLASSES, FEAT_DIM, **kwargs)
    assert estimator.pooled_statistics()[1].sum() == 0


@pytest.mark.parametrize('window', ['epoch', 'ema'])
def test_state_dict_round_trip(window):
    estimator = VMFEstimator(NUM_CLASSES, FEAT_DIM, window=window)
    estimator.start_epoch(0)
    estimator.update(*unit_batch(12, 6))
    estimator.start_epoch(1)
    estimator.update(*unit_batch(5, 7))
    buffer = io.BytesIO()
    torch.save(estimator.state_dict(), buffer)
    buffer.seek(0)
    restored = VMFEstimator(NUM_CLASSES, FEAT_DIM, window=window)
    restored.vmf_parameters(torch.float32)  # a stale cache must be dropped
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    assert torch.equal(restored.mean_direction(), estimator.mean_direction())
    assert torch.equal(restored.concentration(), estimator.concentration())
    assert int(restored.window_epoch) == 1
    batch = unit_batch(6, 8)
    for module in (estimator, restored):
        module.start_epoch(2)
        module.update(*batch)
    assert torch.equal(restored.mean_direction(), estimator.mean_direction())
    assert torch.equal(
        restored.vmf_parameters(torch.float32)[1],
        estimator.vmf_parameters(torch.float32)[1])


def test_auto_sync_chooses_fewer_bytes():
    small = VMFEstimator(10, 128, sync='auto')
    # gather: 2 ranks * 256 rows * (128 * 4 + 8) bytes > 10 * 129 * 8 bytes.
    assert small._choose_sync([256, 200], torch.float32) == 'all_reduce'
    large = VMFEstimator(8142, 128, sync='auto')
    assert large._choose_sync([256, 200], torch.float32) == 'gather'
    assert VMFEstimator(8142, 128, sync='all_reduce')._choose_sync(
        [256, 200], torch.float32) == 'all_reduce'


# ----------------------------------------------------------- distributed
DIST_CONFIGS = [
    dict(window='epoch', sync='gather'),
    dict(window='epoch', sync='all_reduce'),
    dict(window='epoch', sync='auto'),
    dict(window='ema', sync='gather', ema_momentum=0.1),
    dict(window='ema', sync='all_reduce', ema_momentum=0.1),
]
# Per step: (rank 0 batch size, rank 1 batch size); unequal on purpose.
DIST_SIZES = [(7, 3), (2, 9), (0, 4)]


def rank_batch(rank, step):
    size = DIST_SIZES[step][rank]
    return unit_batch(size, 100 * step + rank)


def _dist_worker(rank, port):
    """Each config's estimator state (and vMF parameters) on this rank."""
    init_gloo(rank, port)
    states = []
    try:
        for config in DIST_CONFIGS:
            estimator = VMFEstimator(NUM_CLASSES, FEAT_DIM, **config)
            for step in range(len(DIST_SIZES)):
                if step == 2:
                    estimator.start_epoch(1)
                estimator.update(*rank_batch(rank, step))
            state = estimator.state_dict()
            state['mu'], state['kappa'] = estimator.vmf_parameters()
            states.append(state)
        return states
    finally:
        torch.distributed.destroy_process_group()


def test_distributed_statistics_match_single_process(port):
    ranks = run_two_ranks(_dist_worker, port)
    for index, config in enumerate(DIST_CONFIGS):
        states = [ranks[rank][index] for rank in range(2)]
        assert states[0].keys() == states[1].keys()
        for key in states[0]:
            assert torch.equal(states[0][key], states[1][key]), (config, key)
        # One process that sees rank 0's then rank 1's batch at every step.
        single = VMFEstimator(NUM_CLASSES, FEAT_DIM, **config)
        for step in range(len(DIST_SIZES)):
            if step == 2:
                single.start_epoch(1)
            features, labels = zip(*(rank_batch(r, step) for r in range(2)))
            single.update(torch.cat(features), torch.cat(labels))
        mu, kappa = single.vmf_parameters()
        expected = dict(single.state_dict(), mu=mu, kappa=kappa)
        for key, value in expected.items():
            torch.testing.assert_close(
                states[0][key], value, rtol=1e-12, atol=1e-12,
                msg=lambda m: f'{config} {key}: {m}')


@pytest.mark.parametrize('window', ['epoch', 'ema'])
def test_row_refreshed_parameters_equal_a_full_recomputation(window):
    """The float32 parameters ProCo reads (one slot per view) are refreshed
    only for the classes updated since the slot's last read; after many small
    updates and a window swap they equal a recomputation from the buffers
    bit for bit, and reading one slot never modifies the other."""
    estimator = VMFEstimator(NUM_CLASSES, FEAT_DIM, window=window)
    held = []
    for step in range(10):
        if step == 5:
            estimator.start_epoch(1)
        estimator.update(*unit_batch(3, 40 + step))
        mu, kappa = estimator.vmf_parameters(torch.float32, slot=step % 2)
        held.append((mu, mu.clone(), kappa, kappa.clone()))
        fresh = VMFEstimator(NUM_CLASSES, FEAT_DIM, window=window)
        fresh.load_state_dict(estimator.state_dict())
        want_mu, want_kappa = fresh.vmf_parameters(torch.float32)
        assert torch.equal(mu, want_mu) and torch.equal(kappa, want_kappa)
        # the other slot (the other view's graph) was not touched
        if len(held) > 1:
            mu_other, copy_other = held[-2][0], held[-2][1]
            assert torch.equal(mu_other, copy_other)


def test_kappa_shrinkage_of_a_class_of_one_repeated_feature():
    """Class 0: four copies of e1 (R = 1, kappa at the clamp unshrunk);
    class 1: e1 and e2 (R = sqrt(2)/2); class 2 empty. By hand, with n0 = 2:
    R_0 = (4 + sqrt(2)) / 6, R~_0 = (4 + 2 R_0) / 6,
    R~_1 = (sqrt(2) + 2 R_0) / 4, class 2 stays uniform (kappa 0)."""
    p = 5
    e1, e2 = torch.eye(p, dtype=torch.float64)[:2]
    features = torch.stack([e1, e1, e1, e1, e1, e2])
    labels = torch.tensor([0, 0, 0, 0, 1, 1])
    plain = VMFEstimator(3, p)
    plain.update(features, labels)
    assert plain.concentration()[0] == plain.max_kappa
    shrunk = VMFEstimator(3, p, kappa_shrinkage=2)
    shrunk.update(features, labels)
    r0 = (4 + 2**0.5) / 6
    expected_r = torch.tensor([(4 + 2 * r0) / 6, (2**0.5 + 2 * r0) / 4, 0.],
                              dtype=torch.float64)
    torch.testing.assert_close(shrunk.resultant_length(), expected_r)
    banerjee = expected_r * (p - expected_r**2) / (1 - expected_r**2)
    torch.testing.assert_close(shrunk.concentration(), banerjee)
    assert shrunk.concentration()[0] < 100  # finite, far below the clamp
    # directions are untouched; ProCo's kept float32 copies agree
    torch.testing.assert_close(shrunk.mean_direction(),
                               plain.mean_direction())
    mu, kappa = shrunk.vmf_parameters(torch.float32, slot=0)
    shrunk.update(e2[None], torch.tensor([0]))  # moves R_0 for every class
    mu, kappa = shrunk.vmf_parameters(torch.float32, slot=0)
    torch.testing.assert_close(kappa, shrunk.concentration())
    with pytest.raises(ValueError, match='kappa_shrinkage'):
        VMFEstimator(3, p, kappa_shrinkage=-1)
