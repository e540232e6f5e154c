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
all-reduces (sums) the gradient of the gathered tensor and returns this rank's
slice, so rank ``r`` receives ``d(L_0 + ... + L_{W-1}) / d x_r``: the gradient
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


def _padded_all_gather(tensor: torch.Tensor, sizes: List[int]) -> torch.Tensor:
    """All-gather ``tensor`` of per-rank lengths ``sizes`` (no autograd)."""
    max_size = max(sizes)
    tensor = tensor.contiguous()
    if tensor.shape[0] < max_size:
        padding = tensor.new_zeros((max_size - tensor.shape[0], ) +
                                   tuple(tensor.shape[1:]))
        tensor = torch.cat([tensor, padding], dim=0)
    buffers = [torch.empty_like(tensor) for _ in sizes]
    torch_dist.all_gather(buffers, tensor)
    return torch.cat([buffer[:size] for buffer, size in zip(buffers, sizes)],
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


class _AllGatherWithGrad(torch.autograd.Function):
    """Concatenate every rank's tensor along dim 0, differentiably.

    Backward: the gradient of the gathered tensor is summed over ranks (each
    rank's loss depends on every rank's rows) and this rank's rows are
    returned.
    """

    @staticmethod
    def forward(ctx, tensor: torch.Tensor, sizes: List[int]) -> torch.Tensor:
        rank = torch_dist.get_rank()
        ctx.row_start = sum(sizes[:rank])
        ctx.row_stop = ctx.row_start + sizes[rank]
        return _padded_all_gather(tensor, sizes)

    @staticmethod
    def backward(ctx, grad_gathered: torch.Tensor):
        grad_gathered = grad_gathered.contiguous().clone()
        torch_dist.all_reduce(grad_gathered, op=torch_dist.ReduceOp.SUM)
        return grad_gathered[ctx.row_start:ctx.row_stop], None


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
