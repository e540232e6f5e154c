"""The top ``k`` detections of every class, in torch only.

Shared by :class:`mmlt.PerClassTopKRoIHead` (per image, after NMS) and the
AP-fixed metric (:mod:`.lvis_fixed_ap`, over the dataset), so that the metric
needs no RoI head.
"""
import torch
from torch import Tensor


def topk_per_class(scores: Tensor, labels: Tensor, k: int) -> Tensor:
    """Indices of the ``k`` highest scores of every label.

    Ties keep the earlier index (stable sorts), as Python's ``sorted`` does
    in the LVIS API.

    Args:
        scores (Tensor): ``(n,)`` scores.
        labels (Tensor): ``(n,)`` integer labels.
        k (int): Detections kept per label.

    Returns:
        Tensor: ``(m,)`` int64 indices into ``scores``, ascending (the input
        order is kept), ``m <= n``.
    """
    if scores.numel() == 0:
        return torch.zeros(0, dtype=torch.long, device=scores.device)
    by_score = torch.sort(scores, descending=True, stable=True).indices
    order = by_score[torch.sort(labels[by_score], stable=True).indices]
    grouped = labels[order]
    # rank inside the group = position - first position of the label
    first = torch.searchsorted(grouped, grouped, right=False)
    rank = torch.arange(len(order), device=scores.device) - first
    return torch.sort(order[rank < k]).values


__all__ = ['topk_per_class']
