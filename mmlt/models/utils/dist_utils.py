"""Collectives for contrastive losses: gathers that keep (or drop) autograd.

``mmengine.dist`` collectives are no-ops without a process group but carry no
gradient, and ``torch.distributed.all_gather`` needs the same shape on every
rank. Contrastive losses need both: the negatives of every rank with their
gradient, and batches whose size may differ between ranks (the last, incomplete
batch of an epoch). The helpers here gather the per-rank sizes first, pad to
the largest one, gather, and drop the padding again.

Every helper is the identity (or a no-op) when ``torch.distributed`` is not
initialised or the world has a single rank, so losses call them
unconditionally.

How the gradients of :func:`all_gather_with_grad` relate to the global batch:
suppose rank ``r`` holds ``x_r`` and computes a loss ``L_r`` on its local
anchors against the gathered ``[x_0; ...; x_{W-1}]``. The backward pass
sums the gradient of the gathered tensor over ranks and returns this rank's
slice (one reduce-scatter), so rank ``r`` receives ``d(L_0 + ... + L_{W-1}) / d x_r``: the gradient
of the sum of all ranks' losses, as if one process had computed it. DDP then
*averages* the parameter gradients over the ``W`` ranks. If every ``L_r`` is
the mean over ``B`` local anchors (equal ``B`` on every rank), then
``L_0 + ... + L_{W-1} = W * L_global``, where ``L_global`` is the mean over
all ``W * B`` anchors, and the DDP average is exactly ``d L_global / d theta``:
the distributed run trains on the loss of the global batch. Before DDP's
averaging, the gradient a rank holds for its own ``x_r`` is
``W * d L_global / d x_r``. With ``reduction='sum'`` no factor appears:
``L_0 + ... + L_{W-1}`` is then the global-batch loss itself, for any sizes.
"""
from typing import List, Optional

import torch
import torch.distributed as torch_dist


def is_distributed() -> bool:
    """Whether a process group with more than one rank is initialised."""
    return (torch_dist.is_available() and torch_dist.is_initialized()
            and torch_dist.get_world_size() > 1)


def gather_batch_sizes(tensor: torch.Tensor) -> List[int]:
    """The length of ``tensor`` along dim 0 on every rank, in rank order.

    Args:
        tensor (torch.Tensor): This rank's tensor.

    Returns:
        list[int]: One size per rank; ``[len(tensor)]`` when not distributed.
    """
    if not is_distributed():
        return [tensor.shape[0]]
    local_size = torch.tensor([tensor.shape[0]],
                              dtype=torch.long,
                              device=tensor.device)
    sizes = [
        torch.zeros_like(local_size)
        for _ in range(torch_dist.get_world_size())
    ]
    torch_dist.all_gather(sizes, local_size)
    return [int(size.item()) for size in sizes]


def _pad_rows(tensor: torch.Tensor, max_rows: int) -> torch.Tensor:
    tensor = tensor.contiguous()
    if tensor.shape[0] == max_rows:
        return tensor
    padding = tensor.new_zeros((max_rows - tensor.shape[0], ) +
                               tuple(tensor.shape[1:]))
    return torch.cat([tensor, padding], dim=0)


def _fixed_all_gather(tensor: torch.Tensor) -> torch.Tensor:
    buffers = [torch.empty_like(tensor)
               for _ in range(torch_dist.get_world_size())]
    torch_dist.all_gather(buffers, tensor)
    return torch.cat(buffers, dim=0)


def _padded_all_gather(tensor: torch.Tensor, sizes: List[int]) -> torch.Tensor:
    """All-gather ``tensor`` of per-rank lengths ``sizes`` (no autograd)."""
    max_size = max(sizes)
    blocks = _fixed_all_gather(_pad_rows(tensor, max_size)).split(max_size)
    return torch.cat([block[:size] for block, size in zip(blocks, sizes)],
                     dim=0)


def _check_sizes(tensor: torch.Tensor, sizes: List[int]) -> None:
    rank = torch_dist.get_rank()
    if len(sizes) != torch_dist.get_world_size() or \
            sizes[rank] != tensor.shape[0]:
        raise ValueError(
            f'sizes={sizes} does not match the world size '
            f'{torch_dist.get_world_size()} and this rank\'s length '
            f'{tensor.shape[0]} (rank {rank}); pass the result of '
            'gather_batch_sizes(tensor) or None.')


def _sum_own_block(grad: torch.Tensor, block_rows: int) -> torch.Tensor:
    """This rank's block of ``grad`` ``(W * block_rows, *)`` summed over
    the ranks: one reduce-scatter."""
    grad = grad.contiguous()
    out = grad.new_empty((block_rows, ) + tuple(grad.shape[1:]))
    torch_dist.reduce_scatter_tensor(out, grad, op=torch_dist.ReduceOp.SUM)
    return out


class _AllGatherWithGrad(torch.autograd.Function):
    """Concatenate every rank's tensor along dim 0, differentiably.

    Backward: the gradient of the gathered tensor is summed over ranks (each
    rank's loss depends on every rank's rows) and this rank's rows are
    returned, by one reduce-scatter of the per-rank blocks padded to the
    largest one (an all-reduce would move world-size times more).
    """

    @staticmethod
    def forward(ctx, tensor: torch.Tensor, sizes: List[int]) -> torch.Tensor:
        ctx.sizes = list(sizes)
        return _padded_all_gather(tensor, sizes)

    @staticmethod
    def backward(ctx, grad_gathered: torch.Tensor):
        sizes, max_size = ctx.sizes, max(ctx.sizes)
        blocks = grad_gathered.split(sizes, dim=0)
        padded = torch.cat([_pad_rows(block, max_size) for block in blocks])
        mine = _sum_own_block(padded, max_size)
        return mine[:sizes[torch_dist.get_rank()]], None


def all_gather_with_grad(tensor: torch.Tensor,
                         sizes: Optional[List[int]] = None) -> torch.Tensor:
    """Concatenate ``tensor`` of every rank along dim 0, keeping the gradient.

    The rows of rank ``r`` occupy ``sum(sizes[:r])`` to ``sum(sizes[:r+1])`` of
    the result. Ranks may hold different numbers of rows. The backward pass
    sums the gradient over ranks and returns this rank's rows, so each rank
    gets the gradient of the sum of all ranks' losses with respect to its own
    rows (see the module docstring for how this matches the global-batch loss
    under DDP).

    Every rank must call this (and, later, run backward through its result) the
    same number of times: a loss with nothing to do must still return a value
    connected to the gathered tensor, or the other ranks wait forever in the
    backward all-reduce.

    Args:
        tensor (torch.Tensor): This rank's rows, shape ``(n_r, *)``.
        sizes (list[int], optional): ``n_r`` for every rank, as returned by
            :func:`gather_batch_sizes`; gathered here when None. Pass it to
            save one collective when several tensors share the batch.

    Returns:
        torch.Tensor: Shape ``(sum_r n_r, *)``; ``tensor`` itself when not
        distributed.
    """
    if not is_distributed():
        return tensor
    if sizes is None:
        sizes = gather_batch_sizes(tensor)
    _check_sizes(tensor, sizes)
    return _AllGatherWithGrad.apply(tensor, list(sizes))


def gather_no_grad(tensor: torch.Tensor,
                   sizes: Optional[List[int]] = None) -> torch.Tensor:
    """Concatenate ``tensor`` of every rank along dim 0, detached.

    For labels, statistics and other tensors that need no gradient. Ranks may
    hold different numbers of rows.

    Args:
        tensor (torch.Tensor): This rank's rows, shape ``(n_r, *)``.
        sizes (list[int], optional): ``n_r`` for every rank, as returned by
            :func:`gather_batch_sizes`; gathered here when None.

    Returns:
        torch.Tensor: Shape ``(sum_r n_r, *)``, detached; ``tensor.detach()``
        when not distributed.
    """
    tensor = tensor.detach()
    if not is_distributed():
        return tensor
    if sizes is None:
        sizes = gather_batch_sizes(tensor)
    _check_sizes(tensor, sizes)
    return _padded_all_gather(tensor, list(sizes))


# -- gathers padded to a known bound: no host read -------------------------
# When every rank's row count is known to be at most ``max_rows`` (the
# training loader's batch size, handed to the heads by
# mmlt.GatherBoundHook), each rank pads its rows to ``max_rows`` and the
# gather has one fixed shape: nothing is read on the host. Which gathered
# rows are real is a device mask built from the ranks' counts.


def _check_bound(tensor: torch.Tensor, max_rows: int) -> None:
    if tensor.shape[0] > max_rows:
        raise ValueError(
            f'this rank has {tensor.shape[0]} rows but the gather is padded '
            f'to max_rows={max_rows}: the bound set before training (the '
            'loader\'s batch size) is smaller than a batch; check that the '
            'head\'s max batch size matches train_dataloader.batch_size')


def gathered_row_mask(num_rows: int, max_rows: int,
                      device: torch.device) -> torch.Tensor:
    """Which rows of a gather padded to ``max_rows`` per rank are real.

    Args:
        num_rows (int): This rank's number of rows (a host-side shape).
        max_rows (int): The padded length per rank.
        device (torch.device): Where the mask lives.

    Returns:
        Tensor: bool ``(W * max_rows,)``; rank ``r``'s block is ``True`` for
        its first ``n_r`` rows. All ``True`` (no collective) when not
        distributed.
    """
    if not is_distributed():
        return torch.ones(num_rows, dtype=torch.bool, device=device)
    count = torch.full((1, ), num_rows, dtype=torch.long, device=device)
    counts = _fixed_all_gather(count)  # (W,), on the device
    slots = torch.arange(max_rows, device=device)
    return (slots[None, :] < counts[:, None]).reshape(-1)


class _PaddedAllGatherWithGrad(torch.autograd.Function):
    """:func:`all_gather_padded` with the gradient of
    :class:`_AllGatherWithGrad`: summed over ranks, this rank's rows kept."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor, max_rows: int) -> torch.Tensor:
        ctx.max_rows = max_rows
        ctx.num_rows = tensor.shape[0]
        return _fixed_all_gather(_pad_rows(tensor, max_rows))

    @staticmethod
    def backward(ctx, grad_gathered: torch.Tensor):
        mine = _sum_own_block(grad_gathered, ctx.max_rows)
        return mine[:ctx.num_rows], None


def all_gather_padded(tensor: torch.Tensor,
                      max_rows: int,
                      with_grad: bool = False) -> torch.Tensor:
    """Every rank's rows, each rank's block padded with zeros to
    ``max_rows``; no host read (compare :func:`all_gather_with_grad`).

    Args:
        tensor (Tensor): This rank's rows ``(n_r, *)``, ``n_r <= max_rows``.
        max_rows (int): The padded length per rank, the same on every rank.
        with_grad (bool): Keep the gradient (summed over ranks, as
            :func:`all_gather_with_grad`); else detached.

    Returns:
        Tensor: ``(W * max_rows, *)``: rank ``r``'s rows start at row
        ``r * max_rows``; :func:`gathered_row_mask` says which are real.
        ``tensor`` itself (detached unless ``with_grad``) when not
        distributed.
    """
    if not with_grad:
        tensor = tensor.detach()
    if not is_distributed():
        return tensor
    _check_bound(tensor, max_rows)
    if with_grad:
        return _PaddedAllGatherWithGrad.apply(tensor, int(max_rows))
    return _fixed_all_gather(_pad_rows(tensor, int(max_rows)))

