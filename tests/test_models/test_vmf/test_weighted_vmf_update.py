"""Per-row weights of the vMF estimator and ProCo (pseudo-label masks)."""
import pytest
import torch
import torch.nn.functional as F

from dist_launch import init_gloo, run_two_ranks
from mmlt.models.losses import ProCoLoss
from mmlt.models.vmf.vmf_estimator import VMFEstimator
from op_recorder import HOST_SYNCS, OpRecorder

C, P = 4, 6


def unit_batch(size, seed):
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, C, (size, ), generator=generator)
    centers = torch.randn(C, P, generator=generator) * 2
    features = centers[labels] + torch.randn(size, P, generator=generator)
    return F.normalize(features, dim=1), labels


def states_equal(a, b):
    for key, value in a.state_dict().items():
        torch.testing.assert_close(value, b.state_dict()[key], rtol=1e-12,
                                   atol=1e-12, msg=lambda m: f'{key}: {m}')


@pytest.mark.parametrize('window', ['epoch', 'ema'])
def test_zero_one_weights_equal_the_selected_rows(window):
    weighted, subset = (VMFEstimator(C, P, window=window) for _ in range(2))
    for step in range(3):
        features, labels = unit_batch(9, step)
        mask = torch.arange(9) % 3 != step  # a different third left out
        weighted.update(features, labels, mask.float())
        subset.update(features[mask], labels[mask])
    for key, value in weighted.state_dict().items():
        torch.testing.assert_close(value, subset.state_dict()[key],
                                   rtol=1e-12, atol=1e-12)


def test_fractional_weights_by_a_loop():
    estimator = VMFEstimator(C, P)
    features, labels = unit_batch(10, 1)
    weight = torch.linspace(0, 1, 10)
    estimator.update(features, labels, weight)
    sums = torch.zeros(C, P, dtype=torch.float64)
    counts = torch.zeros(C, dtype=torch.float64)
    for z, y, w in zip(features.double(), labels.tolist(), weight.double()):
        sums[y] += w * z
        counts[y] += w
    torch.testing.assert_close(estimator.current_sums, sums)
    torch.testing.assert_close(estimator.current_counts, counts)


def test_all_zero_weights_add_nothing_and_bad_rows_still_void_the_batch():
    estimator = VMFEstimator(C, P)
    features, labels = unit_batch(6, 2)
    estimator.update(features, labels, torch.zeros(6))
    assert estimator.current_counts.sum() == 0
    features[0] = float('nan')
    weight = torch.ones(6)
    weight[0] = 0  # an overflowing step is left out whatever the weights
    estimator.update(features, labels, weight)
    assert estimator.current_counts.sum() == 0
    assert torch.isfinite(estimator.current_sums).all()
    with pytest.raises(ValueError, match='one per row'):
        estimator.update(features, labels, torch.ones(5))


def test_weighted_update_has_no_host_sync():
    estimator = VMFEstimator(C, P)
    features, labels = unit_batch(8, 3)
    recorder = OpRecorder()
    with recorder:
        estimator.update(features, labels, (labels > 1).float())
    assert not recorder.ops & HOST_SYNCS, recorder.ops & HOST_SYNCS


@pytest.mark.parametrize('score_before_update', [False, True])
def test_proco_weight_masks_scores_and_statistics(score_before_update):
    """Masked samples neither score nor enter the estimate: the loss equals
    ProCo on the kept samples alone."""
    counts = [30, 20, 10, 5]
    weighted, subset = (ProCoLoss(
        C, P, class_counts=counts,
        score_before_update=score_before_update) for _ in range(2))
    for step in range(3):
        (f0, labels), (f1, _) = unit_batch(8, step), unit_batch(8, 10 + step)
        features = torch.stack([f0, F.normalize(f0 + 0.3 * f1, dim=1)])
        mask = torch.tensor([1., 0, 1, 1, 0, 0, 1, 1])
        keep = mask.bool()
        loss = weighted(features, labels, weight=mask,
                        avg_factor=mask.sum())
        expected = subset(features[:, keep], labels[keep])
        torch.testing.assert_close(loss, expected, rtol=1e-6, atol=1e-7)
    states_equal(weighted.estimator, subset.estimator)


DIST_SIZES = [(5, 3), (2, 6)]


def _dist_worker(rank, port, sync):
    init_gloo(rank, port)
    try:
        estimator = VMFEstimator(C, P, sync=sync)
        for step, sizes in enumerate(DIST_SIZES):
            features, labels = unit_batch(sizes[rank], 10 * step + rank)
            estimator.update(features, labels,
                             (torch.arange(sizes[rank]) % 2).float())
        return estimator.state_dict()
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.parametrize('sync', ['gather', 'all_reduce'])
def test_two_ranks_with_masks_match_one_process(port, sync):
    ranks = run_two_ranks(_dist_worker, port, sync)
    single = VMFEstimator(C, P)
    for step, sizes in enumerate(DIST_SIZES):
        for rank in range(2):
            features, labels = unit_batch(sizes[rank], 10 * step + rank)
            keep = torch.arange(sizes[rank]) % 2 == 1
            single.update(features[keep], labels[keep])
    for rank in range(2):
        for key, value in single.state_dict().items():
            torch.testing.assert_close(ranks[rank][key], value, rtol=1e-12,
                                       atol=1e-12)
