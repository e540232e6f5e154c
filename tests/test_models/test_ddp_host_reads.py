"""No host read from mmlt's code in a two-process DDP step of the SupCon, BCL
and ProCo losses (the RoI branch: tests/test_integrations/test_mmdet/
test_roi_branch_host_reads.py).

Every aten op of the forward and backward is recorded and attributed to the
innermost frame outside torch: a host read (``_local_scalar_dense``, ...)
from a file under mmlt/ fails. The ranks hold different batch sizes (the
last batch of an epoch), so the gathers pad; the same step with the sizes
exchanged on the host (no bound set) gives the same losses and gradients,
and does read the host, which shows the recorder sees it.
"""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from dist_launch import init_gloo, run_two_ranks
from op_recorder import OpRecorder, mmlt_syncs

C, P_IN, P, V, MAX_BATCH = 5, 12, 8, 2, 6
BATCH = {0: 6, 1: 4}  # rank -> this step's batch size


def _loss(name):
    from mmlt.models.losses import BCLLoss, ProCoLoss, SupConLoss
    if name == 'proco':
        return ProCoLoss(C, P, class_counts=[40, 20, 10, 5, 2])
    return SupConLoss() if name == 'supcon' else BCLLoss()


def _step(rank, name, bounded):
    """One DDP forward + backward; what it computed and which host reads
    mmlt's code asked for."""
    torch.manual_seed(0)  # the same weights on both ranks
    model = DistributedDataParallel(nn.Linear(P_IN, P))
    loss_module = _loss(name)
    if bounded:
        loss_module.set_max_batch_size(MAX_BATCH)
    generator = torch.Generator().manual_seed(10 + rank)
    batch = BATCH[rank]
    inputs = torch.randn(V, batch, P_IN, generator=generator)
    labels = torch.randint(0, C, (batch, ), generator=generator)
    extra = {}
    if name == 'bcl':
        extra['prototypes'] = F.normalize(
            torch.randn(C, P, generator=torch.Generator().manual_seed(1)),
            dim=1)
    recorder = OpRecorder()
    with recorder:
        features = F.normalize(model(inputs), dim=-1)
        loss = loss_module(features, labels, **extra)
        loss.backward()
    result = dict(
        loss=loss.detach(),
        grad=model.module.weight.grad.clone(),
        syncs=mmlt_syncs(recorder))
    if name == 'proco':
        result['counts'] = loss_module.estimator.current_counts.clone()
        result['sums'] = loss_module.estimator.current_sums.clone()
    return result


def _worker(rank, port):
    init_gloo(rank, port)
    return {(name, bounded): _step(rank, name, bounded)
            for name in ('supcon', 'bcl', 'proco')
            for bounded in (True, False)}


def test_no_host_read_from_mmlt_in_a_ddp_step(port):
    ranks = run_two_ranks(_worker, port, timeout=120)
    for rank, results in enumerate(ranks):
        for name in ('supcon', 'bcl', 'proco'):
            padded, exchanged = results[name, True], results[name, False]
            assert padded['syncs'] == [], (rank, name, padded['syncs'])
            # without a bound the sizes are exchanged: one host read each
            assert any('dist_utils.py' in path
                       for _, path, _ in exchanged['syncs']), (name, rank)
            torch.testing.assert_close(padded['loss'], exchanged['loss'],
                                       rtol=1e-6, atol=1e-7)
            torch.testing.assert_close(padded['grad'], exchanged['grad'],
                                       rtol=1e-5, atol=1e-7)
            if name == 'proco':  # the padding adds exact zeros
                assert torch.equal(padded['counts'], exchanged['counts'])
                assert torch.equal(padded['sums'], exchanged['sums'])
                assert padded['counts'].sum() == V * sum(BATCH.values())
    # DDP averaged the gradients: both ranks hold the same
    for key in ranks[0]:
        assert torch.equal(ranks[0][key]['grad'], ranks[1][key]['grad'])


def test_a_batch_above_the_bound_is_named():
    from mmlt.models.utils.dist_utils import _check_bound
    with pytest.raises(ValueError, match='max_rows=4'):
        _check_bound(torch.zeros(5, 2), 4)
