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

from mmlt.engine.protocols import NeedsClassCounts
from mmlt.registry import MODELS
from mmlt.utils.validation import check_choice, check_int, check_number
from ..vmf.vmf import expected_contrast_logits
from ..vmf.vmf_estimator import VMFEstimator
from .utils import (PaddedGathers, as_view_major, check_reduction,
                    log_prior_from_counts, weight_reduce_loss)


@MODELS.register_module()
class ProCoLoss(nn.Module, NeedsClassCounts, PaddedGathers):
    r"""ProCo loss: logit-adjusted CE on expected contrastive logits.

    Each class's unit features are modelled as ``vMF(mu_c, kappa_c)``,
    estimated online by a :class:`~mmlt.models.vmf.VMFEstimator`.
    Contrasting a feature ``z_i`` against infinitely many samples of class
    ``c`` gives the logit

    .. math::
        \ell_{ic} = \log C_p(\kappa_c) - \log C_p(\tilde\kappa_{ic}),\quad
        \tilde\kappa_{ic} = \|\kappa_c \mu_c + z_i / \tau\|,

    (computed with one ``B x C`` matrix product by
    :func:`~mmlt.models.vmf.vmf.expected_contrast_logits`) and the loss of
    a view is :math:`\mathrm{CE}(\ell_i + \log \pi, y_i)` with the class prior
    :math:`\pi_c = n_c / \sum_k n_k` (logit adjustment). docs/methods.md
    (section ProCo) has the derivation.

    Order within a step, as in the authors' code: each view first updates
    the estimator with its detached features and is then scored against the
    updated parameters, so view ``v`` sees views ``0..v`` of the batch (a
    fresh estimator's first batch is scored against its own statistics);
    ``score_before_update=True`` scores first (views ``0..v-1``).
    The result is the mean over views times ``loss_weight``. The gradient
    reaches the features only; ``mu`` and ``kappa`` are statistics.

    GPU behaviour: the ``B x C x p`` product runs in float32 (also under
    bf16/fp16 autocast, whose precision the Bessel terms cannot use), and so
    do the ``O(B x C)`` element-wise terms for ``p >= 52`` (a difference form
    accurate to about 1e-5 nats, see
    :func:`~mmlt.models.vmf.vmf.expected_contrast_logits`); ``O(C)`` and
    ``O(C x p)`` statistics are float64.
    Nothing in the step reads a tensor value on the host. A batch with a NaN
    or Inf feature is kept out of the estimator and gives a non-finite loss,
    which the optimizer wrapper skips.

    The estimator's statistics and the log-prior are buffers, so both are in
    this loss's ``state_dict``. :class:`mmlt.VMFWindowHook` finds the
    estimator among the model's modules (it declares
    :class:`~mmlt.engine.protocols.HasStatisticsWindow`) and starts its
    windows; the loss takes the class counts
    (:class:`~mmlt.engine.protocols.NeedsClassCounts`).

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
        score_before_update (bool): Score each view against the statistics
            before its own update (leave-batch-out), so a feature is never
            contrasted with a mean that contains itself; matters for classes
            with few samples per window (LVIS rare classes). False (default)
            is the authors' order.
        prior (str): Where ``pi`` comes from. ``'class_counts'`` (default):
            the counts given to :meth:`set_class_counts` (the training set or
            its sampled stream), the prior of the samples the loss sees when
            every sample enters it (classification). ``'estimator'``: the
            estimator's pooled counts at scoring time, ``pi_c = (m_c + a) /
            sum_k (m_k + a)``: the prior of what the loss really sees when it
            takes a selection (a detector's RoIs with IoU >= 0.7). Same on
            every rank; the counts given to :meth:`set_class_counts` are then
            not used.
        prior_pseudo_count (float): ``a`` of ``prior='estimator'``, so a
            class absent from the window has a finite prior. Defaults to 1.
        compile_logits (bool): Fuse the float32 element-wise part of the
            logits with ``torch.compile`` (compiled on the first step; one
            warning and the eager path where compiling fails). Same values as
            eager to float32 rounding. Defaults to False.

    Shape:
        - features: ``(V, B, p)`` view-major unit vectors (V views), or
          ``(B, p)``.
        - labels: ``(B,)`` integers in ``[0, C)``.
        - weight: ``(B,)``, shared by the views.
        - output: scalar, or ``(B,)`` (mean over views) with
          ``reduction='none'``.
    """

    #: :class:`mmlt.ContrastiveBranch` fills in ``num_classes`` and
    #: ``feat_dim`` from the head.
    needs_num_classes = True
    needs_feat_dim = True

    def __init__(self,
                 num_classes: int,
                 feat_dim: int,
                 temperature: float = 0.1,
                 class_counts: Optional[Union[Sequence[float],
                                              torch.Tensor]] = None,
                 loss_weight: float = 1.0,
                 estimator: Optional[Union[dict, VMFEstimator]] = None,
                 reduction: str = 'mean',
                 update_estimator: bool = True,
                 score_before_update: bool = False,
                 prior: str = 'class_counts',
                 prior_pseudo_count: float = 1.0,
                 compile_logits: bool = False) -> None:
        super().__init__()
        self.reduction = check_reduction(reduction)
        self.num_classes = check_int('num_classes', num_classes)
        self.feat_dim = check_int('feat_dim', feat_dim, minimum=2)
        self.temperature = check_number(
            'temperature', temperature, strictly_above=0)
        self.loss_weight = loss_weight
        self.update_estimator = update_estimator
        self.score_before_update = bool(score_before_update)
        self.prior = check_choice('prior', prior,
                                  ('class_counts', 'estimator'))
        self.prior_pseudo_count = check_number(
            'prior_pseudo_count', prior_pseudo_count, strictly_above=0)
        self.compile_logits = bool(compile_logits)

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
        self.prior_is_set = False
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
        log_prior = log_prior_from_counts(class_counts)
        if log_prior.numel() != self.num_classes:
            raise ValueError(
                f'class_counts has {log_prior.numel()} entries; expected '
                f'num_classes={self.num_classes}.')
        self.log_prior.copy_(log_prior)
        self.prior_is_set = True

    def current_log_prior(self) -> torch.Tensor:
        """``log pi`` ``(C,)`` float64 of the logit adjustment (see
        ``prior``); read at scoring time, so with ``prior='estimator'`` it
        follows the window (no host read)."""
        if self.prior == 'class_counts':
            return self.log_prior
        counts = self.estimator.pooled_counts() + self.prior_pseudo_count
        return counts.log() - counts.sum().log()

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        # Checked once here on the host, not in every step.
        self.prior_is_set = not torch.isnan(self.log_prior).any().item()

    def forward(self,
                features: torch.Tensor,
                labels: torch.Tensor,
                weight: Optional[torch.Tensor] = None,
                avg_factor: Optional[float] = None,
                reduction_override: Optional[str] = None) -> torch.Tensor:
        """Update the estimator view by view and return the ProCo loss.

        Args:
            features (Tensor): Unit contrastive features ``(V, B, p)``
                (view-major) or ``(B, p)``.
            labels (Tensor): Class indices ``(B,)``.
            weight (Tensor, optional): Per-sample weights ``(B,)``, applied
                to the loss and to the estimator update (a weight-0 sample,
                e.g. an unconfident pseudo-label, neither is scored nor
                enters the statistics). Defaults to None.
            avg_factor (float, optional): Divisor of the summed loss of a view
                for ``reduction='mean'``. Defaults to None.
            reduction_override (str, optional): Overrides ``self.reduction``.
                Defaults to None.

        Returns:
            Tensor: The loss (see ``Shape`` in the class docstring).
        """
        reduction = check_reduction(reduction_override or self.reduction)
        if not self.prior_is_set and self.prior == 'class_counts':
            raise RuntimeError(
                'ProCoLoss has no class prior: pass class_counts to the '
                'constructor or call set_class_counts(counts) before the '
                'first forward (mmlt.ClassCountsHook does it in training).')
        features, labels = as_view_major(features, labels)
        num_views, num_samples, dim = features.shape
        if dim != self.feat_dim:
            raise ValueError(
                f'features have dimension {dim} (shape '
                f'{tuple(features.shape)}); expected feat_dim='
                f'{self.feat_dim}.')
        # The B x C x p product in float32 (or the features' wider dtype),
        # never float64; the Bessel terms are element-wise float64.
        compute_dtype = torch.promote_types(features.dtype, torch.float32)
        view_losses = []
        # As in the authors' code, each view first updates the statistics and
        # is then scored against them: view v sees views 0..v of the batch.
        update = self.update_estimator and self.training
        for view, view_features in enumerate(features):
            if update and not self.score_before_update:
                self.estimator.update(view_features.detach(), labels, weight,
                                      max_rows=self.gather_bound())
            # One kept copy of mu per view, refreshed in place for the
            # updated classes only (float32; float64 inputs get a new one).
            mean_direction, kappa = self.estimator.vmf_parameters(
                compute_dtype, slot=view)
            logits = expected_contrast_logits(
                view_features.to(compute_dtype), mean_direction, kappa,
                self.temperature, compiled=self.compile_logits)
            # the prior of the statistics the view is scored against
            logits = logits + self.current_log_prior().to(logits.dtype)
            if update and self.score_before_update:
                self.estimator.update(view_features.detach(), labels, weight,
                                      max_rows=self.gather_bound())
            view_losses.append(
                F.cross_entropy(logits, labels, reduction='none'))
        # Mean over views, then the usual per-sample weighting/reduction.
        loss = torch.stack(view_losses).mean(dim=0)
        loss = weight_reduce_loss(loss, weight, reduction, avg_factor)
        return self.loss_weight * loss
