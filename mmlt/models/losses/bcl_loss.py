"""Balanced contrastive loss (BCL).

Reference:
    Zhu et al., "Balanced Contrastive Learning for Long-Tailed Visual
    Recognition", CVPR 2022.
"""
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from mmlt.registry import MODELS
from .utils import (as_view_major, check_reduction, contrastive_anchor_losses,
                    PaddedGathers, gather_contrast_set, reduce_over_views,
                    weight_reduce_loss)


@MODELS.register_module()
class BCLLoss(nn.Module, PaddedGathers):
    r"""Balanced contrastive loss: SupCon with class-complement and averaging.

    Zhu et al. (CVPR 2022) change SupCon in two ways:

    - **class-complement**: the ``C`` class prototypes (label ``c`` for
      prototype ``c``) are appended to the contrast set of every batch, so
      every class appears in every denominator and every anchor has at least
      one positive (its class prototype). The head computes the prototypes as
      ``normalize(MLP(W))`` from the classifier weights ``W``.
    - **class-averaging**: in the denominator each term of class ``c`` is
      divided by the number of class-``c`` entries, so every class contributes
      one averaged term whatever its frequency in the batch.

    With ``B`` the contrast set (batch views, gathered over ranks when
    ``gather_distributed``, plus the prototypes), ``B_c`` its entries of class
    ``c`` and ``y_i`` the label of anchor ``i``:

    .. math::
        L_i = -\frac{1}{|P(i)|} \sum_{q \in P(i)} \log
            \frac{\exp(z_i \cdot z_q / \tau)}
                 {\sum_{c} \frac{1}{|B_c| - [c = y_i]}
                  \sum_{a \in B_c \setminus \{i\}} \exp(z_i \cdot z_a / \tau)}

    where ``P(i) = B_{y_i} \setminus \{i\}`` (the other views of the same class
    and the class prototype). The anchors are the local batch views only; the
    prototypes are contrast entries, not anchors, as in the paper's Eq. (4)-(6)
    whose sum runs over the batch samples (the prototypes already receive a
    gradient as positives and negatives of every anchor). The class counts
    ``|B_c|`` use the labels of all ranks when gathering.

    Reduction: a sample's loss is the mean over its views, and ``'mean'``
    averages over the samples; this equals the paper's mean over all views.
    See :class:`SupConLoss` for how the distributed gradients match the
    global-batch loss.

    Args:
        temperature (float): ``tau > 0``. Defaults to 0.1 (CIFAR; the paper
            uses 0.07 on ImageNet-LT and iNaturalist).
        normalize (bool): L2-normalise the features and prototypes inside the
            loss; idempotent for unit vectors. Defaults to True.
        gather_distributed (bool): Contrast against the features of all ranks.
            Defaults to True.
        loss_weight (float): Multiplies the loss (``lambda`` of the paper: 2.0
            on CIFAR, 0.35 on ImageNet-LT / iNaturalist). Defaults to 1.0.
        reduction (str): ``'none'``, ``'mean'`` or ``'sum'``. Defaults to
            ``'mean'``.

    Shape:
        - features: ``(V, N, p)`` view-major (the paper uses ``V = 2``), or
          ``(N, p)``.
        - labels: ``(N, )`` in ``[0, C)``.
        - prototypes: ``(C, p)``; row ``c`` is the prototype of class ``c``.
        - weight: ``(N, )``.
        - output: scalar, or ``(N, )`` with ``reduction='none'``.
    """

    #: The head passes class prototypes ``normalize(MLP(W))`` from its
    #: classifier rows (see :class:`mmlt.ContrastiveBranch`).
    needs_prototypes = True

    def __init__(self,
                 temperature: float = 0.1,
                 normalize: bool = True,
                 gather_distributed: bool = True,
                 loss_weight: float = 1.0,
                 reduction: str = 'mean') -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError(
                f'temperature={temperature}; expected a value > 0.')
        self.reduction = check_reduction(reduction)
        self.temperature = float(temperature)
        self.normalize = normalize
        self.gather_distributed = gather_distributed
        self.loss_weight = loss_weight

    def forward(self,
                features: torch.Tensor,
                labels: torch.Tensor,
                weight: Optional[torch.Tensor] = None,
                avg_factor: Optional[float] = None,
                reduction_override: Optional[str] = None,
                *,
                prototypes: torch.Tensor) -> torch.Tensor:
        """Compute the BCL loss of the local anchors.

        Args:
            features (torch.Tensor): Contrastive features ``(V, N, p)``
                (view-major) or ``(N, p)``.
            labels (torch.Tensor): Class labels ``(N, )`` in ``[0, C)``.
            weight (torch.Tensor, optional): Per-sample weights ``(N, )``.
                Defaults to None.
            avg_factor (float, optional): Divisor of the summed loss for
                ``reduction='mean'``. Defaults to None (``N``).
            reduction_override (str, optional): Overrides ``self.reduction``.
                Defaults to None.
            prototypes (torch.Tensor): Class prototypes ``(C, p)``.

        Returns:
            torch.Tensor: The weighted loss.
        """
        reduction = reduction_override or self.reduction
        if prototypes.dim() != 2 or prototypes.shape[0] == 0:
            raise ValueError(
                f'prototypes have shape {tuple(prototypes.shape)}; expected '
                '(C, p) with C >= 1, one row per class.')
        num_classes, proto_dim = prototypes.shape
        features, labels = as_view_major(features, labels)
        num_views, num_samples, dim = features.shape
        if proto_dim != dim:
            raise ValueError(
                f'prototypes have dimension {proto_dim} but features have '
                f'{dim}; both must live in the same embedding space.')
        compute_dtype = torch.promote_types(
            torch.promote_types(features.dtype, prototypes.dtype),
            torch.float32)
        features = features.to(compute_dtype)
        prototypes = prototypes.to(compute_dtype)
        if self.normalize:
            features = F.normalize(features, dim=-1)
            prototypes = F.normalize(prototypes, dim=-1)

        # View-major: entry v * N + n is view v of sample n.
        flat_features = features.reshape(num_views * num_samples, dim)
        flat_labels = labels.repeat(num_views)
        batch_features, batch_labels, rank_offset, batch_valid = \
            gather_contrast_set(flat_features, flat_labels,
                                self.gather_distributed,
                                self.gather_bound(num_views))
        # Class-complement: the prototypes join the contrast set (not the
        # anchors). They are identical on every rank, so they are not gathered.
        contrast_features = torch.cat([batch_features, prototypes], dim=0)
        contrast_labels = torch.cat([
            batch_labels,
            torch.arange(num_classes, device=batch_labels.device)
        ])
        contrast_valid = None if batch_valid is None else torch.cat(
            [batch_valid, batch_valid.new_ones(num_classes)])
        anchor_rows = rank_offset + torch.arange(
            len(flat_labels), device=flat_labels.device)
        anchor_loss, _ = contrastive_anchor_losses(
            flat_features,
            flat_labels,
            contrast_features,
            contrast_labels,
            anchor_rows,
            self.temperature,
            class_averaging=True,
            contrast_valid=contrast_valid)
        # Every anchor has its class prototype as a positive.
        sample_loss, _ = reduce_over_views(
            anchor_loss, torch.ones_like(flat_labels, dtype=torch.bool),
            num_views, num_samples)
        loss = weight_reduce_loss(sample_loss, weight, reduction, avg_factor)
        return self.loss_weight * loss

    def extra_repr(self) -> str:
        return (f'temperature={self.temperature}, '
                f'gather_distributed={self.gather_distributed}, '
                f'loss_weight={self.loss_weight}')
