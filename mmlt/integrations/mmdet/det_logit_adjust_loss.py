"""Logit adjustment for softmax RoI classifiers that have a background class.

Reference:
    Menon et al., "Long-tail learning via logit adjustment", ICLR 2021.
"""
import math
from typing import Optional, Sequence, Union

import torch
from mmengine.dist import all_reduce

from mmlt.models.losses.logit_adjust_loss import LogitAdjustLoss
from mmlt.models.losses.utils import log_prior_from_counts
from mmlt.registry import MODELS
from mmlt.utils.validation import check_choice, check_int, check_number


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

    Two sources of ``n_c`` (``prior``):

    * ``'counts'`` (default): :class:`mmlt.ClassCountsHook` calls
      :meth:`set_class_counts` with the ``C`` object-class counts of the
      training set or of its sampled stream (instances per class, see
      :class:`mmlt.LVISV1WithClassCounts`). The adjustment vector ``a``
      (length ``C + 1``) is the ``log_prior`` buffer.
    * ``'online'``: the cumulative counts of the object labels of the RoIs
      the loss has been given (like Seesaw's ``cum_samples``, Wang et al.,
      CVPR 2021), plus ``pseudo_count``, summed over all ranks and updated
      with each batch before its loss: the prior of the RoI labels the
      classifier really sees, which follow the RoI sampler (at most a
      quarter of the sampled RoIs positive, more proposals on large objects)
      rather than the instances. The counts are the ``label_counts`` buffer;
      the counts of :meth:`set_class_counts` are not used.

    Both are saved with the model.

    Args:
        class_counts (Sequence[float] | Tensor, optional): Training counts of
            the ``C`` object classes, all positive. Defaults to None (set
            later).
        tau (float): Strength of the adjustment. Defaults to 1.0.
        prior (str): ``'counts'`` or ``'online'``. Defaults to ``'counts'``.
        num_classes (int, optional): ``C``, needed by ``prior='online'``.
        pseudo_count (float): Added to every online count, so that the
            adjustment starts at 0 (cross-entropy) and stays finite.
            Defaults to 1.
        **kwargs: ``loss_weight``, ``reduction``, ``label_smoothing`` of
            :class:`mmlt.LogitAdjustLoss`.

    Shape:
        - cls_score: ``(N, C + 1)``, background last.
        - label: ``(N,)`` in ``[0, C]``, ``C`` meaning background.
    """

    def __init__(self,
                 class_counts: Optional[Union[Sequence[float],
                                              torch.Tensor]] = None,
                 tau: float = 1.0,
                 prior: str = 'counts',
                 num_classes: Optional[int] = None,
                 pseudo_count: float = 1.0,
                 **kwargs) -> None:
        super().__init__(None, tau, **kwargs)
        self.prior = check_choice('prior', prior, ('counts', 'online'))
        self.pseudo_count = check_number(
            'pseudo_count', pseudo_count, strictly_above=0)
        if self.prior == 'online':
            if num_classes is None:
                raise ValueError(
                    "DetLogitAdjustLoss(prior='online') needs num_classes, "
                    'the number of object classes (e.g. num_classes='
                    '{{_base_.num_classes}} in the config)')
            num_classes = check_int('num_classes', num_classes)
            self.register_buffer(
                'label_counts', torch.zeros(num_classes, dtype=torch.float64))
            # the buffer's size says how many columns cls_score has
            self.log_prior = torch.zeros(num_classes + 1, dtype=torch.float64)
        if class_counts is not None:
            self.set_class_counts(class_counts)

    def set_class_counts(
            self, class_counts: Union[Sequence[float], torch.Tensor]) -> None:
        """Set the adjustment from the ``C`` object-class training counts
        (with ``prior='online'`` only their number is checked).

        Args:
            class_counts (Sequence[float] | Tensor): Counts ``(C,)``, all
                positive (no background entry).
        """
        log_prior = log_prior_from_counts(class_counts)
        if self.prior == 'online':
            if log_prior.numel() != self.label_counts.numel():
                raise ValueError(
                    f'class_counts has {log_prior.numel()} entries; this '
                    f'loss has num_classes={self.label_counts.numel()}')
            return
        self.log_prior = self._adjustment(log_prior).to(
            device=self.log_prior.device)

    @staticmethod
    def _adjustment(log_prior: torch.Tensor) -> torch.Tensor:
        """``(C + 1,)``: ``log(C pi_c)`` for the objects, 0 for background."""
        return torch.cat([
            log_prior + math.log(log_prior.numel()),
            log_prior.new_zeros(1)  # background
        ])

    def log_prior_for(self, label: torch.Tensor,
                      weight: Optional[torch.Tensor]) -> torch.Tensor:
        """The adjustment ``(C + 1,)`` of this batch. With
        ``prior='online'`` in training, this batch's object labels are
        counted first. No host read."""
        if self.prior == 'counts':
            return self.log_prior
        if self.training:  # a validation loss does not count
            self._count_labels(label, weight)
        counts = self.label_counts + self.pseudo_count
        return self._adjustment(counts.log() - counts.sum().log())

    def _count_labels(self, label: torch.Tensor,
                      weight: Optional[torch.Tensor]) -> None:
        """Add the object labels with a positive weight, of every rank, to
        ``label_counts``."""
        num_classes = self.label_counts.numel()
        counted = torch.ones_like(label, dtype=torch.float64) if \
            weight is None else (weight > 0).to(torch.float64)
        batch = self.label_counts.new_zeros(num_classes + 1).index_add_(
            0, label.to(self.label_counts.device),
            counted.to(self.label_counts.device))[:num_classes]
        all_reduce(batch)  # no-op without a process group
        self.label_counts.add_(batch)

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
