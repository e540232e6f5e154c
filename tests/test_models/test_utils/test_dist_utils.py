"""Tests of the autograd-aware and plain gathers, on one process and on a real
two-process gloo group."""
import torch
import torch.distributed as torch_dist

from mmlt.models.utils import (all_gather_with_grad, gather_batch_sizes,
                               gather_no_grad, is_distributed)
from mmlt.models.utils.dist_utils import all_gather_padded, gathered_row_mask

from dist_launch import init_gloo, run_two_ranks


def _anchor_loss(anchors: torch.Tensor,
                 contrast: torch.Tensor) -> torch.Tensor:
    """A nonlinear loss of local anchors against a contrast set: the mean over
    anchors of logsumexp of their dot products (0 without anchors)."""
    return torch.logsumexp(
        anchors @ contrast.T, dim=1).sum() / max(len(anchors), 1)


def test_identity_without_process_group():
    assert not is_distributed()
    x = torch.randn(3, 4, requires_grad=True)
    gathered = all_gather_with_grad(x)
    assert gathered is x
    assert gather_batch_sizes(x) == [3]
    plain = gather_no_grad(x)
    assert not plain.requires_grad
    torch.testing.assert_close(plain, x.detach())


def _gather_worker(rank: int, port: int, size_cases, dim: int) -> list:
    init_gloo(rank, port)
    try:
        assert is_distributed()
        return [_check_gathers(rank, list(sizes), dim) for sizes in size_cases]
    finally:
        torch_dist.destroy_process_group()


def _full_batch(sizes, dim: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(
        sum(sizes), dim, generator=generator, dtype=torch.float64)


def _check_gathers(rank: int, sizes, dim: int) -> torch.Tensor:
    """Check the gathers on this rank; return the gathered batch."""
    world_size = len(sizes)
    full = _full_batch(sizes, dim)
    starts = [sum(sizes[:r]) for r in range(world_size)]
    local = full[starts[rank]:starts[rank] + sizes[rank]].clone()
    local.requires_grad_(True)

    assert gather_batch_sizes(local) == list(sizes)
    gathered = all_gather_with_grad(local)
    torch.testing.assert_close(gathered.detach(), full, rtol=0, atol=0)
    plain = gather_no_grad(local.long(), sizes)
    assert not plain.requires_grad
    assert torch.equal(plain, full.long())

    # Gradient of this rank's loss through the gather, after the gather's
    # backward (sum over ranks, own slice) ...
    _anchor_loss(local, gathered).backward()
    # ... equals the gradient of the sum of all ranks' losses computed by
    # one process on the concatenated batch.
    reference = full.clone().requires_grad_(True)
    total = sum(
        _anchor_loss(reference[s:s + n], reference)
        for s, n in zip(starts, sizes))
    total.backward()
    expected = reference.grad[starts[rank]:starts[rank] + sizes[rank]]
    torch.testing.assert_close(local.grad, expected)

    # The same through the gather padded to a bound (no host read): the
    # real rows, picked by the device mask, give the same gradient.
    bound = max(sizes) + 1
    padded_local = local.detach().clone().requires_grad_(True)
    padded = all_gather_padded(padded_local, bound, with_grad=True)
    real = gathered_row_mask(sizes[rank], bound, padded.device)
    assert padded.shape[0] == world_size * bound
    assert real.tolist() == [i < n for n in sizes for i in range(bound)]
    torch.testing.assert_close(padded.detach()[real], full, rtol=0, atol=0)
    _anchor_loss(padded_local, padded[real]).backward()
    torch.testing.assert_close(padded_local.grad, local.grad)

    if len(set(sizes)) == 1:
        # Equal batches: the sum of per-rank means is W times the mean over
        # the global batch, so the local gradient is W * dL_global/dx.
        reference.grad = None
        _anchor_loss(reference, reference).backward()
        expected = reference.grad[starts[rank]:starts[rank] + sizes[rank]]
        torch.testing.assert_close(local.grad / world_size, expected)

    try:
        all_gather_with_grad(local, sizes=[1, 1])
    except ValueError as error:
        assert 'sizes=[1, 1]' in str(error)
    else:
        raise AssertionError('wrong sizes were accepted')
    return gathered.detach()


def test_two_process_gather_matches_single_process(port):
    # Unequal batches (the last batch of an epoch), an empty rank, and equal
    # batches; one spawn for all three keeps the test fast.
    size_cases = [(3, 5), (0, 2), (4, 4)]
    gathered = run_two_ranks(_gather_worker, port, size_cases, 4)
    # Both ranks went through every case and hold the whole batch.
    for rank_gathered in gathered:
        assert len(rank_gathered) == len(size_cases)
        for sizes, batch in zip(size_cases, rank_gathered):
            assert torch.equal(batch, _full_batch(sizes, 4))
