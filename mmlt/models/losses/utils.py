"""Helpers shared by mmlt's losses (where mmdet keeps its loss helpers).

- :func:`weight_reduce_loss`: per-sample weights and the OpenMMLab reduction.
- :func:`log_prior_from_counts`: ``log pi_c`` from training counts (checked).
- :func:`as_view_major`: the one feature layout of the contrastive losses.
- :func:`gather_contrast_set` / :func:`contrastive_anchor_losses`: the
  SupCon-style loss that SupCon and BCL share.

Feature layout (all contrastive losses, both heads): ``(V, N, p)``, view-major,
so that row block ``v`` is view ``v`` of the ``N`` samples, exactly the order in
which :class:`mmlt.MultiViewDataPreprocessor` stacks the views; ``(N, p)`` is one
view. Flattened, entry ``v * N + n`` is view ``v`` of sample ``n``.

Nothing here reads a tensor value on the host: the checks are on shapes and
dtypes only, so a training step does not wait for the device.
"""
from typing import Optional, Sequence, Tuple, Union

import torch
from torch.distributed import get_rank

from mmlt.engine.protocols import GathersAcrossRanks
from mmlt.utils.validation import check_choice, check_int
from ..utils.dist_utils import (all_gather_padded, all_gather_with_grad,
                                gather_batch_sizes, gather_no_grad,
                                gathered_row_mask, is_distributed)

REDUCTIONS = ('none', 'mean', 'sum')


def check_reduction(reduction: str) -> str:
    """Return ``reduction`` if it is one of :data:`REDUCTIONS`."""
    return check_choice('reduction', reduction, REDUCTIONS)


def weight_reduce_loss(loss: torch.Tensor,
                       weight: Optional[torch.Tensor] = None,
                       reduction: str = 'mean',
                       avg_factor=None) -> torch.Tensor:
    """Weight per-sample losses and reduce them, as OpenMMLab losses do.

    Args:
        loss (Tensor): Per-sample losses ``(N,)``.
        weight (Tensor, optional): Per-sample weights ``(N,)``.
        reduction (str): ``'none'``, ``'mean'`` or ``'sum'``.
        avg_factor (float | Tensor, optional): With ``'mean'``, the sum is
            divided by this instead of ``N`` (a tensor stays on the device, a
            number is not copied there).

    Returns:
        Tensor: ``(N,)`` for ``'none'``, a scalar otherwise.
    """
    check_reduction(reduction)
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
        # NaN without biasing positive avg_factors. A number (MMPretrain's
        # and MMDetection's avg_factor) divides as a number: turning it into
        # a device tensor would be a blocking host-to-device copy per step.
        eps = torch.finfo(loss.dtype).eps
        if isinstance(avg_factor, torch.Tensor):
            return loss.sum() / avg_factor.to(
                device=loss.device, dtype=loss.dtype).clamp(min=eps)
        return loss.sum() / max(float(avg_factor), eps)
    if reduction == 'none':
        return loss
    raise ValueError('avg_factor can only be used with reduction="mean" or '
                     f'"none", got reduction={reduction!r}.')


def log_prior_from_counts(
        class_counts: Union[Sequence[float], torch.Tensor]) -> torch.Tensor:
    """``log(n_c / sum(n))`` in float64 on the CPU, after checking the counts.

    Called when counts are set (before training), never inside a step.
    """
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


def check_unit_features(name: str, features: torch.Tensor) -> None:
    """Check that ``features`` are floating point ``(N, p)`` (shapes only)."""
    if features.dim() != 2:
        raise ValueError(f'{name} have shape {tuple(features.shape)}; '
                         'expected (N, p).')
    if not features.is_floating_point():
        raise ValueError(
            f'{name} must be floating point, got {features.dtype}.')


def as_view_major(features: torch.Tensor,
                  labels: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Check contrastive inputs; return features ``(V, N, p)`` and long labels.

    Only shapes and dtypes are checked (no host sync). Label values and
    finiteness are the data's business: non-finite features make a
    non-finite loss, which the optimizer wrapper skips.

    Args:
        features (Tensor): ``(V, N, p)`` view-major, or ``(N, p)``.
        labels (Tensor): ``(N,)`` integer class labels.
    """
    if features.dim() == 2:
        features = features.unsqueeze(0)
    if features.dim() != 3:
        raise ValueError(
            f'features have shape {tuple(features.shape)}; expected '
            '(V, N, p) for V views (view-major) or (N, p) for one view.')
    if not features.is_floating_point():
        raise ValueError(
            f'features must be floating point, got {features.dtype}.')
    if labels.dim() != 1 or labels.shape[0] != features.shape[1]:
        raise ValueError(
            f'labels have shape {tuple(labels.shape)}; expected '
            f'({features.shape[1]},): one label per sample of features '
            f'{tuple(features.shape)} (V, N, p).')
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise ValueError(
            f'labels must hold integer class indices, got {labels.dtype}.')
    return features, labels.long()


def gather_contrast_set(
    flat_features: torch.Tensor,
    flat_labels: torch.Tensor,
    gather_distributed: bool,
    max_rows: Optional[int] = None
) -> Tuple[torch.Tensor, torch.Tensor, int, Optional[torch.Tensor]]:
    """All ranks' features (with grad) and labels, and where this rank's start.

    With ``max_rows`` (a bound on every rank's ``M_r``) each rank's block is
    padded to it and nothing is read on the host; without it the ranks'
    sizes are exchanged first (one host read).

    Args:
        flat_features (Tensor): This rank's entries ``(M_r, p)``.
        flat_labels (Tensor): Their labels ``(M_r,)``.
        gather_distributed (bool): Gather over ranks (a no-op if not
            distributed).
        max_rows (int, optional): Bound on every rank's ``M_r``.

    Returns:
        tuple: contrast features ``(M, p)``, contrast labels ``(M,)`` (label
        0 on padding), the row of this rank's first entry in them, and a
        bool ``(M,)`` mask of the real rows (None: all are real).
    """
    if not (gather_distributed and is_distributed()):
        return flat_features, flat_labels, 0, None
    if max_rows is not None:
        valid = gathered_row_mask(len(flat_labels), max_rows,
                                  flat_labels.device)
        return (all_gather_padded(flat_features, max_rows, with_grad=True),
                all_gather_padded(flat_labels, max_rows),
                get_rank() * max_rows, valid)
    sizes = gather_batch_sizes(flat_features)
    contrast_features = all_gather_with_grad(flat_features, sizes)
    contrast_labels = gather_no_grad(flat_labels, sizes)
    return contrast_features, contrast_labels, sum(sizes[:get_rank()]), None


def contrastive_anchor_losses(
        anchor_features: torch.Tensor,
        anchor_labels: torch.Tensor,
        contrast_features: torch.Tensor,
        contrast_labels: torch.Tensor,
        anchor_rows: torch.Tensor,
        temperature: float,
        class_averaging: bool = False,
        contrast_valid: Optional[torch.Tensor] = None
) -> Tuple[torch.Tensor, torch.Tensor]:
    r"""Per-anchor supervised contrastive losses (SupCon, and BCL's form).

    For anchor ``i`` with positives ``P(i)`` (same label, not ``i``):

    .. math::
        L_i = -\frac{1}{|P(i)|} \sum_{q \in P(i)} \log
            \frac{\exp(z_i \cdot z_q / \tau)}
                 {\sum_{a \ne i} w_{ia}^{-1} \exp(z_i \cdot z_a / \tau)}

    with ``w = 1`` (SupCon, Khosla et al. 2020) or, with ``class_averaging``,
    ``w_ia = |B_{y_a}| - [y_a = y_i]``, the number of entries of ``a``'s class
    other than the anchor (BCL, Zhu et al. 2022). The product is in the
    features' dtype; docs/methods.md (SupCon, BCL) has the derivation.

    Args:
        anchor_features (Tensor): ``(A, p)``.
        anchor_labels (Tensor): ``(A,)``.
        contrast_features (Tensor): ``(M, p)``, containing the anchors.
        contrast_labels (Tensor): ``(M,)`` in ``[0, C)``.
        anchor_rows (Tensor): ``(A,)``, each anchor's own row in the contrast
            set (excluded from its denominator and positives).
        temperature (float): ``tau``.
        class_averaging (bool): BCL's class-averaged denominator.
        contrast_valid (Tensor, optional): bool ``(M,)``, False for padding
            rows of a padded gather, which are neither positives nor in a
            denominator. Defaults to None (every row is real).

    Returns:
        tuple[Tensor, Tensor]: losses ``(A,)`` (0 without a positive) and a
        bool ``(A,)`` mask of anchors that have a positive.
    """
    logits = anchor_features @ contrast_features.T / temperature
    self_mask = torch.zeros_like(logits, dtype=torch.bool)
    self_mask[torch.arange(len(anchor_rows), device=logits.device),
              anchor_rows] = True
    same_class = anchor_labels[:, None] == contrast_labels[None, :]
    if contrast_valid is not None:
        same_class = same_class & contrast_valid[None, :]
    positive_mask = same_class & ~self_mask
    denominator_logits = logits
    if class_averaging:
        # |B_c| per class; a fixed-size index_add rather than bincount, whose
        # output size would be read from the device. The contrast set holds
        # every class's prototype, so M >= C > every label.
        real = torch.ones_like(contrast_labels, dtype=logits.dtype) \
            if contrast_valid is None else contrast_valid.to(logits.dtype)
        class_sizes = torch.zeros(
            contrast_labels.shape[0], dtype=logits.dtype,
            device=logits.device).index_add_(0, contrast_labels, real)
        averaging_size = class_sizes[contrast_labels][None, :] - \
            same_class.to(logits.dtype)
        denominator_logits = logits - averaging_size.clamp(min=1).log()
    if contrast_valid is not None:
        # Padding rows: the lowest finite value, so exp() makes them exactly
        # 0 beside any real row and a row of padding alone stays finite.
        denominator_logits = denominator_logits.masked_fill(
            ~contrast_valid[None, :], torch.finfo(logits.dtype).min)
    # logsumexp subtracts the row max; -inf removes self-contrast.
    log_denominator = torch.logsumexp(
        denominator_logits.masked_fill(self_mask, float('-inf')),
        dim=1,
        keepdim=True)
    log_prob = logits - log_denominator
    num_positives = positive_mask.sum(dim=1)
    anchor_loss = -torch.where(positive_mask, log_prob,
                               torch.zeros_like(log_prob)).sum(dim=1)
    return anchor_loss / num_positives.clamp(min=1), num_positives > 0


def reduce_over_views(anchor_loss: torch.Tensor, anchor_valid: torch.Tensor,
                      num_anchor_views: int,
                      num_samples: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Mean loss over each sample's valid anchor views (view-major anchors).

    Args:
        anchor_loss (Tensor): ``(V_a * N,)``, view-major.
        anchor_valid (Tensor): ``(V_a * N,)`` bool.
        num_anchor_views (int): ``V_a``.
        num_samples (int): ``N``.

    Returns:
        tuple: per-sample loss ``(N,)`` (0 where no view is valid) and a bool
        ``(N,)`` mask of samples with a valid view.
    """
    anchor_loss = anchor_loss.view(num_anchor_views, num_samples)
    num_valid = anchor_valid.view(num_anchor_views, num_samples).sum(dim=0)
    return anchor_loss.sum(dim=0) / num_valid.clamp(min=1), num_valid > 0


class PaddedGathers(GathersAcrossRanks):
    """Keeps the bound of :class:`~mmlt.engine.protocols.GathersAcrossRanks`
    for a module whose gathers take ``rows_per_sample`` rows per sample."""

    max_batch_size: Optional[int] = None

    def set_max_batch_size(self, max_batch_size: int) -> None:
        self.max_batch_size = check_int('max_batch_size', max_batch_size)

    def gather_bound(self, rows_per_sample: int = 1) -> Optional[int]:
        """Rows per rank to pad a gather to; None without a bound (the sizes
        are then exchanged, one host read)."""
        if self.max_batch_size is None:
            return None
        return rows_per_sample * self.max_batch_size
