"""ProCo: probabilistic contrastive loss with closed-form expected logits.

Reference:
    Du et al., "Probabilistic Contrastive Learning for Long-Tailed Visual
    Recognition", TPAMI 2024, arXiv 2403.06726.
"""
import math
from typing import Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from mmlt.registry import MODELS
from ..utils.vmf import expected_contrast_logits
from ..utils.vmf_estimator import VMFEstimator
from .logit_adjust_loss import (_REDUCTIONS, _log_prior_from_counts,
                                weight_reduce_loss)
from .supcon_loss import check_contrastive_inputs


@MODELS.register_module()
class ProCoLoss(nn.Module):
    r"""ProCo loss: logit-adjusted CE on expected contrastive logits.

    Each class's unit features are modelled as ``vMF(mu_c, kappa_c)``,
    estimated online by a :class:`~mmlt.models.utils.VMFEstimator`.
    Contrasting a feature ``z_i`` against infinitely many samples of class
    ``c`` gives the logit

    .. math::
        \ell_{ic} = \log C_p(\kappa_c) - \log C_p(\tilde\kappa_{ic}),\quad
        \tilde\kappa_{ic} = \|\kappa_c \mu_c + z_i / \tau\|,

    (computed with one ``B x C`` matrix product by
    :func:`~mmlt.models.utils.vmf.expected_contrast_logits`) and the loss of
    a view is :math:`\mathrm{CE}(\ell_i + \log \pi, y_i)` with the class prior
    :math:`\pi_c = n_c / \sum_k n_k` (logit adjustment). For every view, in
    order, the estimator is first updated with that view's detached features
    and labels, then the view's logits are computed, so a fresh estimator's
    first batch is scored against its own statistics (as in the official
    code). The result is the mean over views times ``loss_weight``. The
    gradient reaches the features only; ``mu`` and ``kappa`` are statistics.

    The estimator's statistics and the log-prior are buffers, so both are in
    this loss's ``state_dict``. A window hook finds the estimator among the
    model's modules and calls its ``start_epoch`` before every epoch; this
    loss deliberately has no such method, so the window is not swapped twice.

    Args:
        num_classes (int): Number of classes ``C``.
        feat_dim (int): Dimension ``p`` of the contrastive features.
        temperature (float): ``tau`` > 0. Defaults to 0.1.
        class_counts (Sequence[float] | Tensor, optional): Training samples
            per class (all positive) for the prior. If None, call
            :meth:`set_class_counts` (or load a checkpoint) before the first
            forward. Defaults to None.
        loss_weight (float): Multiplies the loss. Defaults to 1.0.
        estimator (dict | VMFEstimator, optional): The vMF estimator, a config
            (``num_classes`` and ``feat_dim`` are filled in) or an instance.
            Defaults to None, i.e. ``dict(type='mmlt.VMFEstimator')``.
        reduction (str): ``'none'``, ``'mean'`` or ``'sum'``. Defaults to
            ``'mean'``.
        update_estimator (bool): Update the estimator in ``forward`` (only in
            training mode). Set False to score features against frozen
            statistics, e.g. for evaluation. Defaults to True.

    Shape:
        - features: ``(B, p)`` or ``(B, V, p)`` unit vectors (V views).
        - labels: ``(B,)`` integers in ``[0, C)``.
        - weight: ``(B,)``, shared by the views.
        - output: scalar, or ``(B,)`` (mean over views) with
          ``reduction='none'``.
    """

    def __init__(self,
                 num_classes: int,
                 feat_dim: int,
                 temperature: float = 0.1,
                 class_counts: Optional[Union[Sequence[float],
                                              torch.Tensor]] = None,
                 loss_weight: float = 1.0,
                 estimator: Optional[Union[dict, VMFEstimator]] = None,
                 reduction: str = 'mean',
                 update_estimator: bool = True) -> None:
        super().__init__()
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) \
                or num_classes < 1:
            raise ValueError(
                f'num_classes must be a positive int, got {num_classes!r}')
        if isinstance(feat_dim, bool) or not isinstance(feat_dim, int) \
                or feat_dim < 2:
            raise ValueError(
                f'feat_dim must be an int >= 2, got {feat_dim!r}')
        if isinstance(temperature, bool) or not isinstance(
                temperature, (int, float)) or not temperature > 0 \
                or math.isinf(temperature):
            raise ValueError('temperature must be a finite number > 0, got '
                             f'{temperature!r}')
        if reduction not in _REDUCTIONS:
            raise ValueError(
                f'reduction={reduction!r}; expected one of {_REDUCTIONS}.')
        self.num_classes = num_classes
        self.feat_dim = feat_dim
        self.temperature = float(temperature)
        self.loss_weight = loss_weight
        self.reduction = reduction
        self.update_estimator = update_estimator

        if estimator is None:
            estimator = dict(type='mmlt.VMFEstimator')
        if isinstance(estimator, dict):
            estimator = dict(estimator)
            estimator.setdefault('type', 'mmlt.VMFEstimator')
            estimator.setdefault('num_classes', num_classes)
            estimator.setdefault('feat_dim', feat_dim)
            estimator = MODELS.build(estimator)
        if not isinstance(estimator, VMFEstimator):
            raise ValueError('estimator must be a VMFEstimator or its config '
                             f'dict, got {type(estimator).__name__}')
        if (estimator.num_classes, estimator.feat_dim) != (num_classes,
                                                           feat_dim):
            raise ValueError(
                f'estimator has num_classes={estimator.num_classes} and '
                f'feat_dim={estimator.feat_dim}; expected {num_classes} and '
                f'{feat_dim} like the loss')
        self.estimator = estimator

        # NaN means "not set yet" (a checkpoint or set_class_counts fills it).
        self.register_buffer(
            'log_prior',
            torch.full((num_classes, ), math.nan, dtype=torch.float64))
        if class_counts is not None:
            self.set_class_counts(class_counts)

    def set_class_counts(
            self, class_counts: Union[Sequence[float], torch.Tensor]) -> None:
        """Set the class prior ``pi_c = n_c / sum(n)`` from training counts.

        Args:
            class_counts (Sequence[float] | Tensor): Training samples per
                class, shape ``(C,)``, all positive.
        """
        log_prior = _log_prior_from_counts(class_counts)
        if log_prior.numel() != self.num_classes:
            raise ValueError(
                f'class_counts has {log_prior.numel()} entries; expected '
                f'num_classes={self.num_classes}.')
        self.log_prior.copy_(log_prior)

    def forward(self,
                features: torch.Tensor,
                labels: torch.Tensor,
                weight: Optional[torch.Tensor] = None,
                avg_factor: Optional[float] = None,
                reduction_override: Optional[str] = None) -> torch.Tensor:
        """Update the estimator view by view and return the ProCo loss.

        Args:
            features (Tensor): Unit contrastive features ``(B, p)`` or
                ``(B, V, p)``.
            labels (Tensor): Class indices ``(B,)``.
            weight (Tensor, optional): Per-sample weights ``(B,)``. Defaults
                to None.
            avg_factor (float, optional): Divisor of the summed loss of a view
                for ``reduction='mean'``. Defaults to None.
            reduction_override (str, optional): Overrides ``self.reduction``.
                Defaults to None.

        Returns:
            Tensor: The loss (see ``Shape`` in the class docstring).
        """
        reduction = reduction_override or self.reduction
        if reduction not in _REDUCTIONS:
            raise ValueError(
                f'reduction={reduction!r}; expected one of {_REDUCTIONS}.')
        if torch.isnan(self.log_prior).any():
            raise RuntimeError(
                'ProCoLoss has no class prior: pass class_counts to the '
                'constructor or call set_class_counts(counts) before the '
                'first forward.')
        features, labels = check_contrastive_inputs(features, labels,
                                                    self.num_classes)
        if features.shape[-1] != self.feat_dim:
            raise ValueError(
                f'features have dimension {features.shape[-1]} (shape '
                f'{tuple(features.shape)}); expected '
                f'feat_dim={self.feat_dim}.')

        update = self.update_estimator and self.training
        log_prior = self.log_prior.to(features.dtype)
        view_losses = []
        for view in range(features.shape[1]):
            view_features = features[:, view]
            if update:
                # Labels and finiteness were checked above.
                self.estimator.update(
                    view_features.detach(), labels, validate=False)
            # float64: expected_contrast_logits computes in float64 anyway,
            # so the cached parameters are used without a (C, p) conversion.
            mean_direction, kappa = self.estimator.vmf_parameters(
                torch.float64)
            logits = expected_contrast_logits(view_features, mean_direction,
                                              kappa, self.temperature)
            view_loss = F.cross_entropy(
                logits + log_prior, labels, reduction='none')
            view_losses.append(
                weight_reduce_loss(view_loss, weight, reduction, avg_factor))
        loss = view_losses[0] if len(view_losses) == 1 else torch.stack(
            view_losses).mean(dim=0)
        return self.loss_weight * loss
