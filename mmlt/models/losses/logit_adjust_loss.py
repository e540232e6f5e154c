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

from mmlt.registry import MODELS

_REDUCTIONS = ('none', 'mean', 'sum')


def weight_reduce_loss(loss: torch.Tensor,
                       weight: Optional[torch.Tensor] = None,
                       reduction: str = 'mean',
                       avg_factor: Optional[float] = None) -> torch.Tensor:
    """Weight per-sample losses and reduce them, as OpenMMLab losses do.

    Args:
        loss (torch.Tensor): Per-sample losses, shape ``(N, )``.
        weight (torch.Tensor, optional): Per-sample weights, shape ``(N, )``.
            Defaults to None.
        reduction (str): ``'none'``, ``'mean'`` or ``'sum'``. Defaults to
            ``'mean'``.
        avg_factor (float, optional): With ``reduction='mean'``, the sum is
            divided by this instead of ``N``. Defaults to None.

    Returns:
        torch.Tensor: ``(N, )`` for ``'none'``, a scalar otherwise.
    """
    if reduction not in _REDUCTIONS:
        raise ValueError(
            f'reduction={reduction!r}; expected one of {_REDUCTIONS}.')
    if weight is not None:
        if weight.shape != loss.shape:
            raise ValueError(
                f'weight has shape {tuple(weight.shape)}; expected one weight '
                f'per sample, shape {tuple(loss.shape)}.')
        loss = loss * weight.to(loss.dtype)
    if avg_factor is None:
        if reduction == 'mean':
            return loss.mean() if loss.numel() > 0 else loss.sum()
        return loss.sum() if reduction == 'sum' else loss
    if reduction == 'mean':
        # The clamp keeps an avg_factor of 0 (nothing to average) from giving
        # NaN without biasing positive avg_factors.
        avg_factor = torch.as_tensor(
            avg_factor, dtype=loss.dtype, device=loss.device)
        return loss.sum() / avg_factor.clamp(min=torch.finfo(loss.dtype).eps)
    if reduction == 'none':
        return loss
    raise ValueError('avg_factor can only be used with reduction="mean" or '
                     f'"none", got reduction={reduction!r}.')


def _log_prior_from_counts(
        class_counts: Union[Sequence[float], torch.Tensor]) -> torch.Tensor:
    """``log(n_c / sum(n))`` in float64, after checking the counts."""
    counts = torch.as_tensor(class_counts, dtype=torch.float64)
    counts = counts.detach().cpu()
    if counts.dim() != 1 or counts.numel() == 0:
        raise ValueError(
            f'class_counts must be a non-empty 1-D sequence (one count per '
            f'class), got shape {tuple(counts.shape)}.')
    if not torch.isfinite(counts).all():
        raise ValueError(
            f'class_counts must be finite, got {counts.tolist()}.')
    if (counts <= 0).any():
        bad = torch.nonzero(counts <= 0).flatten().tolist()
        raise ValueError(
            f'class_counts must be positive: classes {bad} have counts '
            f'{counts[bad].tolist()}, and log(0) is -inf. Drop classes with '
            'no training sample, or add a pseudo-count (e.g. counts + 1).')
    return torch.log(counts / counts.sum())


def posthoc_adjust(logits: torch.Tensor,
                   class_counts: Union[Sequence[float], torch.Tensor],
                   tau: float = 1.0) -> torch.Tensor:
    """Post-hoc logit adjustment: ``logits - tau * log(prior)``.

    Menon et al. (ICLR 2021), Eq. (3): a classifier trained with plain
    cross-entropy predicts ``argmax_y(logits_y - tau * log(pi_y))`` for a
    balanced test distribution.

    Args:
        logits (torch.Tensor): Classifier outputs, shape ``(N, C)``.
        class_counts (Sequence[float] | torch.Tensor): Training samples per
            class ``n_c``, shape ``(C, )``, all positive.
        tau (float): Strength of the adjustment. Defaults to 1.0.

    Returns:
        torch.Tensor: Adjusted logits, shape ``(N, C)``, dtype of ``logits``.
    """
    log_prior = _log_prior_from_counts(class_counts)
    if logits.shape[-1] != log_prior.numel():
        raise ValueError(
            f'logits have {logits.shape[-1]} classes but class_counts has '
            f'{log_prior.numel()} entries.')
    return logits - tau * log_prior.to(
        device=logits.device, dtype=logits.dtype)


@MODELS.register_module()
class LogitAdjustLoss(nn.Module):
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
        if reduction not in _REDUCTIONS:
            raise ValueError(
                f'reduction={reduction!r}; expected one of {_REDUCTIONS}.')
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(
                f'label_smoothing={label_smoothing}; expected a value in '
                '[0, 1).')
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
        log_prior = _log_prior_from_counts(class_counts)
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
        if not torch.isfinite(cls_score).all():
            raise ValueError(
                'cls_score contains NaN or inf; check the learning rate and '
                'the inputs, or enable gradient clipping / AMP loss scaling.')
        if label.dim() == 1:
            if label.shape[0] != num_samples:
                raise ValueError(
                    f'label has {label.shape[0]} entries but cls_score has '
                    f'{num_samples} rows.')
            if label.is_floating_point():
                raise ValueError('1-D label must hold integer class indices, '
                                 f'got dtype {label.dtype}.')
            if num_samples > 0 and (label.min() < 0
                                    or label.max() >= num_classes):
                raise ValueError(
                    f'label values must be in [0, {num_classes - 1}], got '
                    f'min {int(label.min())} and max {int(label.max())}.')
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

        adjusted = cls_score
        if self.tau != 0:
            adjusted = cls_score + self.tau * self.log_prior.to(
                cls_score.dtype)
        loss = F.cross_entropy(
            adjusted,
            label,
            reduction='none',
            label_smoothing=self.label_smoothing)
        loss = weight_reduce_loss(loss, weight, reduction, avg_factor)
        return self.loss_weight * loss

    def extra_repr(self) -> str:
        return (f'num_classes={self.num_classes}, tau={self.tau}, '
                f'loss_weight={self.loss_weight}, '
                f'reduction={self.reduction!r}')


MODELS.register_module(name='BalancedSoftmaxLoss', module=LogitAdjustLoss)
