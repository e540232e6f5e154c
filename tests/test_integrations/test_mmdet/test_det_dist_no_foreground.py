"""Two gloo ranks, one of them without foreground RoIs: every contrastive
loss still runs its collectives on both ranks (no deadlock), the estimators
agree, and the rank with RoIs gets the gradient of a single process."""
import pytest
import torch
import torch.distributed as torch_dist
from dist_launch import init_gloo, run_two_ranks

pytest.importorskip('mmdet')

from mmlt_det_helpers import (BACKGROUND_PROPOSALS, GTS,  # noqa: E402
                              PROPOSALS, bbox_head_cfg, build_roi_head,
                              features, roi_head_cfg, sampling_results)

LOSSES = ('mmlt.ProCoLoss', 'mmlt.SupConLoss', 'mmlt.BCLLoss')
CLASS_COUNTS = [50, 30, 10, 5, 2]


def make_head(contrast_loss):
    torch.manual_seed(0)
    head = build_roi_head(
        roi_head_cfg(bbox_head_cfg(contrast_loss=contrast_loss)))
    if contrast_loss == 'mmlt.ProCoLoss':
        head.bbox_head.contrast_branch.loss.set_class_counts(CLASS_COUNTS)
    return head


def contrast_step(head, proposals):
    """One contrastive loss + backward; the gradients and estimator state."""
    torch.manual_seed(1)  # same random sampling on every rank
    results = sampling_results(head, proposals, GTS)
    loss = head.bbox_loss(features(), results)['loss_bbox']['loss_contrast']
    loss.backward()
    grads = {
        name: param.grad.clone()
        for name, param in head.bbox_head.named_parameters()
        if name.startswith(('shared_fcs', 'contrast_branch.projector')) and
        param.grad is not None
    }
    buffers = {
        name: buffer.clone()
        for name, buffer in head.bbox_head.contrast_branch.loss.named_buffers()
    }
    num_fg = sum(len(res.pos_priors) for res in results)
    return dict(loss=loss.detach(), grads=grads, buffers=buffers,
                num_fg=num_fg)


def _worker(rank, port):
    init_gloo(rank, port, timeout=60.0)
    proposals = BACKGROUND_PROPOSALS if rank == 0 else PROPOSALS
    out = {name: contrast_step(make_head(name), proposals) for name in LOSSES}
    torch_dist.barrier()
    torch_dist.destroy_process_group()
    return out


def test_rank_without_foreground_runs_collectives(port):
    # A hanging collective fails the test after the timeout.
    ranks = run_two_ranks(_worker, port, timeout=120.0)

    for name in LOSSES:
        empty, full = ranks[0][name], ranks[1][name]
        assert empty['num_fg'] == 0 and full['num_fg'] > 0
        assert empty['loss'].item() == 0.0
        # the projector is in the graph on the empty rank (zero gradient)
        assert any(
            key.startswith('contrast_branch.projector')
            for key in empty['grads'])
        for grad in empty['grads'].values():
            assert grad.abs().sum() == 0
        # same statistics everywhere
        for key, value in full['buffers'].items():
            assert torch.equal(empty['buffers'][key], value), (name, key)
        # the rank with RoIs sees the loss and gradient of one process with
        # the same RoIs (the empty rank adds nothing to the gathered set)
        single = contrast_step(make_head(name), PROPOSALS)
        torch.testing.assert_close(full['loss'], single['loss'])
        assert set(full['grads']) == set(single['grads'])
        for key, grad in single['grads'].items():
            torch.testing.assert_close(full['grads'][key], grad)
    proco = ranks[1]['mmlt.ProCoLoss']['buffers']
    assert proco['estimator.current_counts'].sum().item() == ranks[1][
        'mmlt.ProCoLoss']['num_fg']
