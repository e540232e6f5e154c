"""No host read from mmlt's code in a two-process step of the ProCo RoI
branch: the RoIs are weighted (1 for foreground with IoU >= the threshold,
else 0) instead of selected with a boolean mask, and the estimator's gather
is padded to ``images x sampler.num`` RoIs per rank.

Rank 1 has background proposals only (nothing for the branch), rank 0 two
images with objects. Unweighted and unbounded (the sizes exchanged on the
host), the same step gives the same loss and the same statistics.
"""
import pytest
import torch

pytest.importorskip('mmdet')

from dist_launch import init_gloo, run_two_ranks  # noqa: E402
from mmlt_det_helpers import (BACKGROUND_PROPOSALS, GTS,  # noqa: E402
                              PROPOSALS, bbox_head_cfg, build_roi_head,
                              features, roi_head_cfg, sampling_results)
from op_recorder import OpRecorder, mmlt_syncs  # noqa: E402

CLASS_COUNTS = [50, 30, 10, 5, 2]


def _step(rank, bounded):
    torch.manual_seed(0)
    head = build_roi_head(roi_head_cfg(bbox_head_cfg()))
    head.bbox_head.contrast_branch.loss.set_class_counts(CLASS_COUNTS)
    if bounded:
        head.set_max_batch_size(2)  # images per rank
    proposals = PROPOSALS if rank == 0 else BACKGROUND_PROPOSALS
    torch.manual_seed(rank)  # the RoI sampler's draw
    results = sampling_results(head, proposals, GTS)
    recorder = OpRecorder()
    with recorder:
        out = head.bbox_loss(features(seed=rank), results)
        loss = out['loss_bbox']['loss_contrast']
        loss.backward()
    estimator = head.bbox_head.contrast_branch.loss.estimator
    return dict(
        loss=loss.detach(),
        counts=estimator.current_counts.clone(),
        sums=estimator.current_sums.clone(),
        grad=head.bbox_head.shared_fcs[0].weight.grad.clone(),
        syncs=mmlt_syncs(recorder))


def _worker(rank, port):
    init_gloo(rank, port)
    return {bounded: _step(rank, bounded) for bounded in (True, False)}


def test_no_host_read_from_mmlt_in_the_roi_branch_step(port):
    ranks = run_two_ranks(_worker, port, timeout=120)
    for rank, results in enumerate(ranks):
        bounded, exchanged = results[True], results[False]
        assert bounded['syncs'] == [], (rank, bounded['syncs'])
        assert any('dist_utils.py' in path
                   for _, path, _ in exchanged['syncs'])
        torch.testing.assert_close(bounded['loss'], exchanged['loss'])
        torch.testing.assert_close(bounded['grad'], exchanged['grad'])
        assert torch.equal(bounded['counts'], exchanged['counts'])
        assert torch.equal(bounded['sums'], exchanged['sums'])
    # both ranks hold rank 0's three foreground RoIs of classes 1, 3, 3
    # (at least: near-copies of the boxes) and nothing of rank 1
    counts = ranks[0][True]['counts']
    assert torch.equal(counts, ranks[1][True]['counts'])
    assert counts[1] > 0 and counts[3] > 0
    assert counts[0] == counts[2] == counts[4] == 0
    assert ranks[1][True]['loss'] == 0
