"""Logit adjustment for softmax RoI classifiers that have a background class.

Reference:
    Menon et al., "Long-tail learning via logit adjustment", ICLR 2021.
"""
import math
from typing import Sequence, Union

import torch

from mmlt.models.losses.logit_adjust_loss import LogitAdjustLoss
from mmlt.models.losses.utils import log_prior_from_counts
from mmlt.registry import MODELS


@MODELS.register_module()
class DetLogitAdjustLoss(LogitAdjustLoss):
    r"""Logit-adjusted cross-entropy over ``C`` object classes + background.

    A two-stage detector's RoI classifier has ``C + 1`` outputs, the last one
    for background, and its training RoIs are mostly background (75% with
    MMDetection's default sampler). Logit adjustment should balance the object
    classes without moving the object-versus-background decision, so the
    target distribution keeps the background share and spreads the object
    share evenly over the ``C`` classes. Dividing the training distribution by
    that target gives the adjustment

    .. math::
        a_c = \tau \log(C \pi_c) = \tau \log\frac{n_c}{\bar n}
        \quad (c < C), \qquad a_{\mathrm{bg}} = 0,

    with :math:`\pi_c = n_c / \sum_k n_k` the object-class prior and
    :math:`\bar n` the mean count. Training minimises
    :math:`\mathrm{CE}(x + a, y)`; prediction uses the raw logits ``x``. On a
    balanced training set ``a = 0`` and this is cross-entropy.

    :class:`mmlt.ClassCountsHook` calls :meth:`set_class_counts` with the
    ``C`` object-class counts (for RoIs, the instance counts of the annotation
    file are the natural prior, see :class:`mmlt.LVISV1WithClassCounts`).
    The adjustment vector ``a`` (length ``C + 1``) is the ``log_prior``
    buffer, so it is saved with the model.

    Args:
        class_counts (Sequence[float] | Tensor, optional): Training counts of
            the ``C`` object classes, all positive. Defaults to None (set
            later).
        tau (float): Strength of the adjustment. Defaults to 1.0.
        **kwargs: ``loss_weight``, ``reduction``, ``label_smoothing`` of
            :class:`mmlt.LogitAdjustLoss`.

    Shape:
        - cls_score: ``(N, C + 1)``, background last.
        - label: ``(N,)`` in ``[0, C]``, ``C`` meaning background.
    """

    def set_class_counts(
            self, class_counts: Union[Sequence[float], torch.Tensor]) -> None:
        """Set the adjustment from the ``C`` object-class training counts.

        Args:
            class_counts (Sequence[float] | Tensor): Counts ``(C,)``, all
                positive (no background entry).
        """
        log_prior = log_prior_from_counts(class_counts)
        num_classes = log_prior.numel()
        adjustment = torch.cat([
            log_prior + math.log(num_classes),
            log_prior.new_zeros(1)  # background
        ])
        self.log_prior = adjustment.to(device=self.log_prior.device)

    def forward(self, cls_score: torch.Tensor, label: torch.Tensor,
                *args, **kwargs) -> torch.Tensor:
        """The loss of :class:`mmlt.LogitAdjustLoss` with the adjustment
        above; see its ``forward`` for the arguments."""
        if self.num_classes and cls_score.dim() == 2 and \
                cls_score.shape[1] != self.num_classes:
            raise ValueError(
                f'cls_score has {cls_score.shape[1]} columns; expected '
                f'{self.num_classes}: the {self.num_classes - 1} object '
                'classes of class_counts plus background (a Seesaw-style '
                'classifier with extra columns needs its own loss)')
        return super().forward(cls_score, label, *args, **kwargs)
