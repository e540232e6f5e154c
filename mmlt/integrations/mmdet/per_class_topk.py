"""The top ``k`` detections of every class, in torch only.

Shared by :class:`mmlt.PerClassTopKRoIHead` (per image, after NMS, and its
running per-class thresholds over an evaluation pass) and the AP-fixed metric
(:mod:`.lvis_fixed_ap`, over the dataset), so that the metric needs no RoI
head.
"""
from typing import Tuple

import torch
from torch import Tensor


def rank_within_class(scores: Tensor, labels: Tensor) -> Tuple[Tensor, Tensor]:
    """Each detection's rank among the detections of its label.

    Ties keep the earlier index (stable sorts), as Python's ``sorted`` does
    in the LVIS API.

    Args:
        scores (Tensor): ``(n,)`` scores.
        labels (Tensor): ``(n,)`` integer labels.

    Returns:
        tuple[Tensor, Tensor]: ``order (n,)``, the indices grouped by label
        and by score descending inside a label, and ``rank (n,)``, the rank
        (0 = best) of ``order[i]`` inside its label.
    """
    by_score = torch.sort(scores, descending=True, stable=True).indices
    order = by_score[torch.sort(labels[by_score], stable=True).indices]
    grouped = labels[order]
    # rank inside the group = position - first position of the label
    first = torch.searchsorted(grouped, grouped, right=False)
    return order, torch.arange(len(order), device=scores.device) - first


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
    order, rank = rank_within_class(scores, labels)
    return torch.sort(order[rank < k]).values


def merge_best_scores(best: Tensor, scores: Tensor, labels: Tensor) -> Tensor:
    """The ``k`` best scores of every class after adding some detections.

    Args:
        best (Tensor): ``(C, k)`` the best scores so far, descending per row,
            ``-inf`` where a class has fewer than ``k``.
        scores (Tensor): ``(n,)`` new scores.
        labels (Tensor): ``(n,)`` their classes in ``[0, C)``.

    Returns:
        Tensor: ``(C, k)``, the same layout; its last column is each class's
        ``k``-th best score (``-inf`` until it has ``k``).
    """
    if scores.numel() == 0:
        return best
    num_classes, k = best.shape
    order, rank = rank_within_class(scores, labels)
    kept = rank < k
    order, rank = order[kept], rank[kept]
    # at test time, not in a training step: one host read for the width
    new = best.new_full((num_classes, int(rank.max()) + 1), -float('inf'))
    new[labels[order], rank] = scores[order].to(best.dtype)
    return torch.cat([best, new], dim=1).topk(k, dim=1).values


__all__ = ['merge_best_scores', 'rank_within_class', 'topk_per_class']
