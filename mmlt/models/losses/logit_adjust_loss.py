"""Logit-adjusted cross-entropy (== Balanced Softmax) and its post-hoc variant.

References:
    - Menon et al., "Long-tail learning via logit adjustment", ICLR 2021.
    - Ren et al., "Balanced Meta-Softmax for Long-Tailed Visual Recognition",
      NeurIPS 2020.
"""
from typing import Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from mmlt.engine.protocols import NeedsClassCounts
from mmlt.registry import MODELS
from mmlt.utils.validation import check_number
from .utils import check_reduction, log_prior_from_counts, weight_reduce_loss

@MODELS.register_module()
class LogitAdjustLoss(nn.Module, NeedsClassCounts):
    r"""Logit-adjusted cross-entropy, a.k.a. Balanced Softmax.

    .. math::
        L(x, y) = \mathrm{CE}(x + \tau \log \pi, y),
        \qquad \pi_c = n_c / \sum_k n_k,

    where ``x`` are the classifier logits and ``n_c`` the number of training
    samples of class ``c``. With ``tau = 1`` this is Balanced Softmax (Ren et
    al., NeurIPS 2020); Menon et al. (ICLR 2021) call it the logit-adjusted
    loss. At test time the raw logits ``x`` are used: adding the log-prior
    during training already makes ``argmax x`` Bayes-optimal for the balanced
    error. The log-prior is a buffer, so it is saved in the ``state_dict``.
    Registered as ``LogitAdjustLoss`` and ``BalancedSoftmaxLoss``.

    Args:
        class_counts (Sequence[float] | torch.Tensor, optional): Training
            samples per class, all positive. If None, call
            :meth:`set_class_counts` (or load a checkpoint) before the first
            forward. Defaults to None.
        tau (float): Strength of the adjustment, ``>= 0``; 0 gives plain
            cross-entropy. Defaults to 1.0.
        loss_weight (float): Multiplies the loss. Defaults to 1.0.
        reduction (str): ``'none'``, ``'mean'`` or ``'sum'``. Defaults to
            ``'mean'``.
        label_smoothing (float): Label smoothing in ``[0, 1)`` applied to the
            targets, as in :func:`torch.nn.functional.cross_entropy`.
            Defaults to 0.0.

    Shape:
        - cls_score: ``(N, C)``.
        - label: ``(N, )`` class indices, or ``(N, C)`` one-hot / soft targets
          (mixup, cutmix).
        - weight: ``(N, )``.
        - output: scalar, or ``(N, )`` with ``reduction='none'``.
    """

    def __init__(self,
                 class_counts: Optional[Union[Sequence[float],
                                              torch.Tensor]] = None,
                 tau: float = 1.0,
                 loss_weight: float = 1.0,
                 reduction: str = 'mean',
                 label_smoothing: float = 0.0) -> None:
        super().__init__()
        if not tau >= 0:
            raise ValueError(f'tau={tau}; expected tau >= 0 (0 disables the '
                             'adjustment).')
        check_reduction(reduction)
        check_number('label_smoothing', label_smoothing, minimum=0.0,
                     strictly_below=1.0)
        self.tau = float(tau)
        self.loss_weight = loss_weight
        self.reduction = reduction
        self.label_smoothing = float(label_smoothing)
        # An empty buffer means "not set yet"; it is resized on load.
        self.register_buffer('log_prior', torch.zeros(0, dtype=torch.float64))
        if class_counts is not None:
            self.set_class_counts(class_counts)

    @property
    def num_classes(self) -> int:
        """Number of classes of the prior; 0 before the counts are set."""
        return self.log_prior.numel()

    def set_class_counts(
            self, class_counts: Union[Sequence[float], torch.Tensor]) -> None:
        """Set the class prior from the training class counts.

        Args:
            class_counts (Sequence[float] | torch.Tensor): Training samples per
                class, shape ``(C, )``, all positive.
        """
        # float64: C numbers cost nothing and keep float64 runs exact.
        log_prior = log_prior_from_counts(class_counts)
        self.log_prior = log_prior.to(device=self.log_prior.device)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # A loss built without class_counts has an empty prior; take the
        # checkpoint's shape instead of failing with a size mismatch.
        key = prefix + 'log_prior'
        if key in state_dict and self.log_prior.numel() == 0:
            self.log_prior = torch.empty_like(
                state_dict[key], device=self.log_prior.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self,
                cls_score: torch.Tensor,
                label: torch.Tensor,
                weight: Optional[torch.Tensor] = None,
                avg_factor: Optional[float] = None,
                reduction_override: Optional[str] = None) -> torch.Tensor:
        """Compute the logit-adjusted cross-entropy.

        Args:
            cls_score (torch.Tensor): Logits, shape ``(N, C)``.
            label (torch.Tensor): Class indices ``(N, )`` or soft targets
                ``(N, C)``.
            weight (torch.Tensor, optional): Per-sample weights ``(N, )``.
                Defaults to None.
            avg_factor (float, optional): Divisor of the summed loss for
                ``reduction='mean'``. Defaults to None.
            reduction_override (str, optional): Overrides ``self.reduction``.
                Defaults to None.

        Returns:
            torch.Tensor: The weighted loss.
        """
        reduction = reduction_override or self.reduction
        if self.num_classes == 0 and self.tau != 0:
            raise RuntimeError(
                'LogitAdjustLoss has no class prior: pass class_counts to the '
                'constructor or call set_class_counts(counts) before the '
                'first forward.')
        if cls_score.dim() != 2:
            raise ValueError(
                f'cls_score has shape {tuple(cls_score.shape)}; expected '
                '(N, C) logits.')
        num_samples, num_classes = cls_score.shape
        has_prior = self.num_classes > 0  # tau = 0 (plain CE) needs none
        if has_prior and num_classes != self.num_classes:
            raise ValueError(
                f'cls_score has {num_classes} classes but the class prior has '
                f'{self.num_classes} (from class_counts); they must match.')
        if label.dim() == 1:
            if label.shape[0] != num_samples:
                raise ValueError(
                    f'label has {label.shape[0]} entries but cls_score has '
                    f'{num_samples} rows.')
            if label.is_floating_point():
                raise ValueError('1-D label must hold integer class indices, '
                                 f'got dtype {label.dtype}.')
            label = label.long()
        elif label.dim() == 2:
            if tuple(label.shape) != tuple(cls_score.shape):
                raise ValueError(
                    f'soft label has shape {tuple(label.shape)}; expected the '
                    f'shape of cls_score {tuple(cls_score.shape)}.')
            label = label.to(cls_score.dtype)
        else:
            raise ValueError(
                f'label has shape {tuple(label.shape)}; expected (N, ) class '
                'indices or (N, C) soft targets.')

        # At least float32: under bf16/fp16 autocast a log-prior of -10 would
        # lose its last digits, and cross-entropy runs in float32 anyway.
        adjusted = cls_score.to(
            torch.promote_types(cls_score.dtype, torch.float32))
        if self.tau != 0:
            adjusted = adjusted + self.tau * self.log_prior_for(
                label, weight).to(adjusted.dtype)
        loss = F.cross_entropy(
            adjusted,
            label,
            reduction='none',
            label_smoothing=self.label_smoothing)
        loss = weight_reduce_loss(loss, weight, reduction, avg_factor)
        return self.loss_weight * loss

    def log_prior_for(self, label: torch.Tensor,
                      weight: Optional[torch.Tensor]) -> torch.Tensor:
        """The log-prior ``(C,)`` added (times ``tau``) to the logits of this
        batch: the ``log_prior`` buffer. Subclasses with a prior that
        follows the labels (:class:`mmlt.DetLogitAdjustLoss` with
        ``prior='online'``) override it."""
        return self.log_prior

    def extra_repr(self) -> str:
        return (f'num_classes={self.num_classes}, tau={self.tau}, '
                f'loss_weight={self.loss_weight}, '
                f'reduction={self.reduction!r}')


MODELS.register_module(name='BalancedSoftmaxLoss', module=LogitAdjustLoss)
