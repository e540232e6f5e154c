"""Supervised contrastive loss (SupCon).

Reference:
    Khosla et al., "Supervised Contrastive Learning", NeurIPS 2020.
"""
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from mmlt.registry import MODELS
from mmlt.utils.validation import check_choice
from .utils import (as_view_major, check_reduction, contrastive_anchor_losses,
                    PaddedGathers, gather_contrast_set, reduce_over_views,
                    weight_reduce_loss)


@MODELS.register_module()
class SupConLoss(nn.Module, PaddedGathers):
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
        - features: ``(V, N, p)`` view-major, or ``(N, p)``.
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
        check_choice('contrast_mode', contrast_mode, ('all', 'one'))
        self.reduction = check_reduction(reduction)
        self.temperature = float(temperature)
        self.base_temperature = float(base_temperature)
        self.contrast_mode = contrast_mode
        self.normalize = normalize
        self.gather_distributed = gather_distributed
        self.loss_weight = loss_weight

    def forward(self,
                features: torch.Tensor,
                labels: torch.Tensor,
                weight: Optional[torch.Tensor] = None,
                avg_factor: Optional[float] = None,
                reduction_override: Optional[str] = None) -> torch.Tensor:
        """Compute the SupCon loss of the local anchors.

        Args:
            features (torch.Tensor): Contrastive features ``(V, N, p)``
                (view-major) or ``(N, p)``, unit vectors unless ``normalize``
                is on.
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
        features, labels = as_view_major(features, labels)
        num_views, num_samples, dim = features.shape
        compute_dtype = torch.promote_types(features.dtype, torch.float32)
        features = features.to(compute_dtype)
        if self.normalize:
            features = F.normalize(features, dim=-1)

        # View-major: entry v * N + n is view v of sample n.
        flat_features = features.reshape(num_views * num_samples, dim)
        flat_labels = labels.repeat(num_views)
        contrast_features, contrast_labels, rank_offset, contrast_valid = \
            gather_contrast_set(flat_features, flat_labels,
                                self.gather_distributed,
                                self.gather_bound(num_views))

        anchor_views = num_views if self.contrast_mode == 'all' else 1
        num_anchors = anchor_views * num_samples
        anchor_rows = rank_offset + torch.arange(
            num_anchors, device=features.device)

        # Keeps a loss of 0 connected to the (gathered) features, so that
        # backward gives zeros rather than no gradient, and every rank runs
        # the gather's backward (its all-reduce) the same number of times.
        zero_connected = contrast_features.sum() * 0.0
        if contrast_features.shape[0] < 2:
            # A single entry has no positive and an empty denominator.
            sample_loss = zero_connected.expand(num_samples)
            sample_valid = torch.zeros_like(labels, dtype=torch.bool)
        else:
            anchor_loss, anchor_valid = contrastive_anchor_losses(
                flat_features[:num_anchors], flat_labels[:num_anchors],
                contrast_features, contrast_labels, anchor_rows,
                self.temperature, contrast_valid=contrast_valid)
            anchor_loss = anchor_loss * (
                self.temperature / self.base_temperature)
            sample_loss, sample_valid = reduce_over_views(
                anchor_loss, anchor_valid, anchor_views, num_samples)
            sample_loss = sample_loss + zero_connected
        if reduction == 'mean' and avg_factor is None:
            # Samples without a positive contribute nothing to the mean; a
            # device tensor, so the step does not wait for the count.
            avg_factor = sample_valid.sum().clamp(min=1)
        loss = weight_reduce_loss(sample_loss, weight, reduction, avg_factor)
        return self.loss_weight * loss

    def extra_repr(self) -> str:
        return (f'temperature={self.temperature}, '
                f'base_temperature={self.base_temperature}, '
                f'contrast_mode={self.contrast_mode!r}, '
                f'gather_distributed={self.gather_distributed}, '
                f'loss_weight={self.loss_weight}')
