"""Supervised contrastive loss (SupCon).

Reference:
    Khosla et al., "Supervised Contrastive Learning", NeurIPS 2020.
"""
from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.distributed import get_rank

from mmlt.registry import MODELS
from ..utils.dist_utils import (all_gather_with_grad, gather_batch_sizes,
                                gather_no_grad, is_distributed)
from .logit_adjust_loss import _REDUCTIONS, weight_reduce_loss


def check_contrastive_inputs(
        features: torch.Tensor,
        labels: torch.Tensor,
        num_classes: Optional[int] = None
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Validate contrastive features and labels; return them as 3-D and long.

    Args:
        features (torch.Tensor): ``(N, V, p)`` (V views) or ``(N, p)``.
        labels (torch.Tensor): ``(N, )`` integer class labels.
        num_classes (int, optional): If given, labels must be below it.

    Returns:
        tuple[torch.Tensor, torch.Tensor]: features ``(N, V, p)`` and labels
        ``(N, )`` as ``torch.long``.
    """
    if features.dim() == 2:
        features = features.unsqueeze(1)
    if features.dim() != 3:
        raise ValueError(
            f'features have shape {tuple(features.shape)}; expected '
            '(N, V, p) for V views or (N, p) for one view.')
    if not features.is_floating_point():
        raise ValueError(
            f'features must be floating point, got {features.dtype}.')
    if labels.dim() != 1 or labels.shape[0] != features.shape[0]:
        raise ValueError(
            f'labels have shape {tuple(labels.shape)}; expected '
            f'({features.shape[0]}, ): one label per sample of features '
            f'{tuple(features.shape)}.')
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise ValueError(
            f'labels must hold integer class indices, got {labels.dtype}.')
    if labels.numel() > 0:
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or (num_classes is not None and high >= num_classes):
            expected = ('>= 0' if num_classes is None else
                        f'in [0, {num_classes - 1}]')
            raise ValueError(
                f'labels must be {expected}, got min {low} and max {high}.')
    if not torch.isfinite(features).all():
        raise ValueError(
            'features contain NaN or inf; the projection head diverged or its '
            'input was not finite. Lower the learning rate, enable gradient '
            'clipping, or check the data pipeline.')
    return features, labels.long()


def gather_contrast_set(
        flat_features: torch.Tensor, flat_labels: torch.Tensor,
        gather_distributed: bool) -> Tuple[torch.Tensor, torch.Tensor, int]:
    """All ranks' features (with grad) and labels, and where this rank's start.

    Args:
        flat_features (torch.Tensor): This rank's entries ``(M_r, p)``.
        flat_labels (torch.Tensor): Their labels ``(M_r, )``.
        gather_distributed (bool): Gather over ranks (a no-op if not
            distributed).

    Returns:
        tuple: contrast features ``(M, p)``, contrast labels ``(M, )`` and the
        row of this rank's first entry in them.
    """
    if not (gather_distributed and is_distributed()):
        return flat_features, flat_labels, 0
    sizes = gather_batch_sizes(flat_features)
    contrast_features = all_gather_with_grad(flat_features, sizes)
    contrast_labels = gather_no_grad(flat_labels, sizes)
    return contrast_features, contrast_labels, sum(sizes[:get_rank()])


def reduce_over_views(
        anchor_loss: torch.Tensor, anchor_valid: torch.Tensor,
        num_samples: int,
        num_anchor_views: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Mean loss over each sample's valid anchor views.

    Args:
        anchor_loss (torch.Tensor): ``(N * V_a, )``, sample-major.
        anchor_valid (torch.Tensor): ``(N * V_a, )`` bool.
        num_samples (int): N.
        num_anchor_views (int): V_a, the anchor views per sample.

    Returns:
        tuple: per-sample loss ``(N, )`` (0 where no view is valid) and a
        ``(N, )`` bool mask of samples with a valid view.
    """
    anchor_loss = anchor_loss.view(num_samples, num_anchor_views)
    valid_views = anchor_valid.view(num_samples, num_anchor_views)
    num_valid = valid_views.sum(dim=1)
    sample_loss = anchor_loss.sum(dim=1) / num_valid.clamp(min=1)
    return sample_loss, num_valid > 0


@MODELS.register_module()
class SupConLoss(nn.Module):
    r"""Supervised contrastive loss (Khosla et al., NeurIPS 2020, Eq. 2).

    For an anchor ``i`` with positives ``P(i)`` (the other entries of the same
    label, including its other views) and ``A(i)`` all entries but ``i``:

    .. math::
        L_i = -\frac{\tau}{\tau_b} \frac{1}{|P(i)|} \sum_{q \in P(i)}
              \log \frac{\exp(z_i \cdot z_q / \tau)}
                        {\sum_{a \in A(i)} \exp(z_i \cdot z_a / \tau)}

    Every view of every local sample is an anchor (``contrast_mode='all'``) or
    only the first view (``'one'``). The contrast set is all views of the
    batch; with ``gather_distributed`` it is all views of all ranks, gathered
    with an autograd-aware all-gather
    (:func:`mmlt.models.utils.all_gather_with_grad`), while the anchors stay
    the local samples.

    Anchors without a positive (a single-view sample whose label appears
    nowhere else) contribute nothing and are left out of the mean, so the loss
    is never NaN; if no anchor has a positive the loss is 0 and still connected
    to the graph.

    Reduction: a sample's loss is the mean over its anchor views; ``'mean'``
    averages over the samples that have a positive (or divides the sum by
    ``avg_factor``). This equals the paper's mean over all anchors.

    Distributed training: each rank's ``'mean'`` is over its own anchors. With
    the gather's backward summing gradients over ranks and DDP averaging them,
    the parameters get exactly the gradient of the global-batch loss when every
    rank has the same number of anchors with positives (e.g. equal batch sizes
    and two or more views); see :mod:`mmlt.models.utils.dist_utils`.

    Args:
        temperature (float): ``tau > 0``. Defaults to 0.07.
        base_temperature (float, optional): ``tau_b``; the loss is scaled by
            ``tau / tau_b`` as in the paper's code (which uses 0.07). None
            means ``tau_b = tau`` (no scaling). Defaults to None.
        contrast_mode (str): ``'all'`` (every view is an anchor) or ``'one'``
            (only view 0). Defaults to ``'all'``.
        normalize (bool): L2-normalise the features inside the loss. It is
            idempotent for features that are already unit vectors (also in
            the gradient), so leaving it on is safe. Defaults to True.
        gather_distributed (bool): Contrast against the features of all ranks.
            Defaults to True.
        loss_weight (float): Multiplies the loss. Defaults to 1.0.
        reduction (str): ``'none'``, ``'mean'`` or ``'sum'``. Defaults to
            ``'mean'``.

    Shape:
        - features: ``(N, V, p)`` or ``(N, p)``.
        - labels: ``(N, )``.
        - weight: ``(N, )``.
        - output: scalar, or ``(N, )`` with ``reduction='none'``.
    """

    def __init__(self,
                 temperature: float = 0.07,
                 base_temperature: Optional[float] = None,
                 contrast_mode: str = 'all',
                 normalize: bool = True,
                 gather_distributed: bool = True,
                 loss_weight: float = 1.0,
                 reduction: str = 'mean') -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError(
                f'temperature={temperature}; expected a value > 0.')
        if base_temperature is None:
            base_temperature = temperature
        if not base_temperature > 0:
            raise ValueError(
                f'base_temperature={base_temperature}; expected a value > 0 '
                '(or None for no scaling).')
        if contrast_mode not in ('all', 'one'):
            raise ValueError(
                f"contrast_mode={contrast_mode!r}; expected 'all' or 'one'.")
        if reduction not in _REDUCTIONS:
            raise ValueError(
                f'reduction={reduction!r}; expected one of {_REDUCTIONS}.')
        self.temperature = float(temperature)
        self.base_temperature = float(base_temperature)
        self.contrast_mode = contrast_mode
        self.normalize = normalize
        self.gather_distributed = gather_distributed
        self.loss_weight = loss_weight
        self.reduction = reduction

    def forward(self,
                features: torch.Tensor,
                labels: torch.Tensor,
                weight: Optional[torch.Tensor] = None,
                avg_factor: Optional[float] = None,
                reduction_override: Optional[str] = None) -> torch.Tensor:
        """Compute the SupCon loss of the local anchors.

        Args:
            features (torch.Tensor): Contrastive features ``(N, V, p)`` or
                ``(N, p)``, unit vectors unless ``normalize`` is on.
            labels (torch.Tensor): Class labels ``(N, )``, non-negative.
            weight (torch.Tensor, optional): Per-sample weights ``(N, )``.
                Defaults to None.
            avg_factor (float, optional): Divisor of the summed loss for
                ``reduction='mean'``. Defaults to None (the number of samples
                with a positive).
            reduction_override (str, optional): Overrides ``self.reduction``.
                Defaults to None.

        Returns:
            torch.Tensor: The weighted loss.
        """
        reduction = reduction_override or self.reduction
        features, labels = check_contrastive_inputs(features, labels)
        num_samples, num_views, dim = features.shape
        compute_dtype = torch.promote_types(features.dtype, torch.float32)
        features = features.to(compute_dtype)
        if self.normalize:
            features = F.normalize(features, dim=-1)

        # Sample-major: entry n * V + v is view v of sample n.
        flat_features = features.reshape(num_samples * num_views, dim)
        flat_labels = labels.repeat_interleave(num_views)
        contrast_features, contrast_labels, rank_offset = gather_contrast_set(
            flat_features, flat_labels, self.gather_distributed)

        anchor_views = num_views if self.contrast_mode == 'all' else 1
        anchor_index = (
            torch.arange(num_samples, device=features.device)[:, None] *
            num_views + torch.arange(
                anchor_views, device=features.device)[None, :]).flatten()
        anchor_features = flat_features[anchor_index]
        anchor_labels = flat_labels[anchor_index]

        # Keeps a loss of 0 connected to the (gathered) features, so that
        # backward gives zeros rather than no gradient, and every rank runs
        # the gather's backward (its all-reduce) the same number of times.
        zero_connected = contrast_features.sum() * 0.0
        if contrast_features.shape[0] < 2:
            # A single entry has no positive and an empty denominator.
            sample_loss = zero_connected.expand(num_samples)
            sample_valid = torch.zeros_like(labels, dtype=torch.bool)
        else:
            anchor_loss, anchor_valid = self._anchor_losses(
                anchor_features, anchor_labels, contrast_features,
                contrast_labels, rank_offset + anchor_index)
            sample_loss, sample_valid = reduce_over_views(
                anchor_loss, anchor_valid, num_samples, anchor_views)
            sample_loss = sample_loss + zero_connected
        if reduction == 'mean' and avg_factor is None:
            # Samples without a positive contribute nothing to the mean.
            avg_factor = max(int(sample_valid.sum()), 1)
        loss = weight_reduce_loss(sample_loss, weight, reduction, avg_factor)
        return self.loss_weight * loss

    def _anchor_losses(
            self, anchor_features: torch.Tensor, anchor_labels: torch.Tensor,
            contrast_features: torch.Tensor, contrast_labels: torch.Tensor,
            anchor_rows: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Per-anchor SupCon losses ``(A, )`` and whether each has a positive.

        ``anchor_rows`` are the anchors' own rows in the contrast set.
        """
        logits = anchor_features @ contrast_features.T / self.temperature
        self_mask = torch.zeros_like(logits, dtype=torch.bool)
        self_mask[torch.arange(len(anchor_rows), device=logits.device),
                  anchor_rows] = True
        positive_mask = (anchor_labels[:, None]
                         == contrast_labels[None, :]) & ~self_mask
        # logsumexp subtracts the row max; -inf removes self-contrast (every
        # row keeps a finite entry as the contrast set has >= 2 entries).
        log_denominator = torch.logsumexp(
            logits.masked_fill(self_mask, float('-inf')), dim=1, keepdim=True)
        log_prob = logits - log_denominator
        num_positives = positive_mask.sum(dim=1)
        anchor_loss = -torch.where(positive_mask, log_prob,
                                   torch.zeros_like(log_prob)).sum(dim=1)
        anchor_loss = anchor_loss / num_positives.clamp(min=1)
        anchor_loss = anchor_loss * (self.temperature / self.base_temperature)
        return anchor_loss, num_positives > 0

    def extra_repr(self) -> str:
        return (f'temperature={self.temperature}, '
                f'base_temperature={self.base_temperature}, '
                f'contrast_mode={self.contrast_mode!r}, '
                f'gather_distributed={self.gather_distributed}, '
                f'loss_weight={self.loss_weight}')
