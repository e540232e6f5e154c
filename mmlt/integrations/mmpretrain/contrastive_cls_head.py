"""MMPretrain's ClsHead with a contrastive branch (ProCo, BCL, SupCon)."""
import math
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmpretrain.models.heads import ClsHead

from mmlt.engine.protocols import NeedsClassCounts
from mmlt.models.heads import (ContrastiveBranch, CosineClassifier,
                               pooled_features)
from mmlt.models.heads.contrastive_branch import rename_legacy_branch_keys
from mmlt.models.losses.utils import log_prior_from_counts
from mmlt.registry import MODELS
from mmlt.utils.validation import check_choice, check_int


@MODELS.register_module()
class ContrastiveClsHead(ClsHead, NeedsClassCounts):
    """Classifier plus a contrastive projection branch for long-tailed data.

    The layout of ProCo (Du et al., TPAMI 2024) and BCL (Zhu et al., CVPR
    2022): the backbone sees all views of a batch together (so BatchNorm
    statistics mix them), the first view feeds the classifier trained with a
    logit-adjusted loss, and the other views feed a
    :class:`mmlt.ContrastiveBranch`::

        views (V*B rows, view-major) -+- rows [0, B) ----> fc -> loss_cls
                                      +- rows [B, V*B) --> branch
                                                           -> loss_contrast

    ``loss_contrast`` is already weighted by the contrastive loss's own
    ``loss_weight`` (alpha of ProCo, lambda of BCL). Views stay view-major
    end to end: rows ``[v*B, (v+1)*B)`` are view ``v`` (see
    :class:`mmlt.MultiViewDataPreprocessor`), and the losses take them as
    ``(V-1, B, p)``. With one view (testing, a CE baseline, a linear probe)
    the branch is skipped; prediction uses the classifier only
    (:meth:`ClsHead._get_predictions`), so inference costs nothing extra.

    Class counts reach every module that needs them from
    :class:`mmlt.ClassCountsHook` (this head's post-hoc prior, the losses'
    priors), once each; the prior is a buffer, so it is in checkpoints.

    Args:
        num_classes (int): Number of classes.
        in_channels (int): Feature dimension from the neck (2048 for
            ResNet-50).
        proj_dims (Sequence[int]): Hidden and output sizes of the projection
            MLP, e.g. ``(2048, 1024)`` (ImageNet-LT) or ``(512, 128)`` (CIFAR).
        classifier (str): ``'linear'`` or ``'cosine'``.
        cosine_scale (float): Logit scale of the cosine classifier.
        loss (dict, optional): Classifier loss. Defaults to logit adjustment
            (``mmlt.LogitAdjustLoss``, tau 1). None trains no classifier
            (stage 1 of two-stage contrastive training): then every view,
            the first included, feeds the contrastive branch.
        contrast_loss (dict, optional): ``mmlt.ProCoLoss``, ``mmlt.BCLLoss`` or
            ``mmlt.SupConLoss``. None disables the branch.
        contrast_weight (float, optional): Older key for the contrastive
            loss's ``loss_weight`` (set one of the two).
        class_counts (Sequence[int], optional): Training counts for post-hoc
            adjustment; usually set by :class:`mmlt.ClassCountsHook`.
        posthoc_tau (float): Post-hoc logit adjustment at prediction,
            ``logits - tau * log(prior)``; 0 (default) predicts with the raw
            classifier logits as ProCo and BCL do.
        proto_dims (Sequence[int], optional): Prototype MLP sizes for losses
            that need prototypes (BCL).
        topk (int | Sequence[int]): Training accuracies to log.
        init_cfg (dict, optional): Initialisation config.

    Shape:
        - feats[-1]: ``(V*B, in_channels)`` pooled features, view-major.
        - cls_score: ``(B, num_classes)`` (first view).
    """

    def __init__(self,
                 num_classes: int,
                 in_channels: int,
                 proj_dims: Sequence[int] = (2048, 1024),
                 classifier: str = 'linear',
                 cosine_scale: float = 30.0,
                 loss: Optional[dict] = dict(
                     type='mmlt.LogitAdjustLoss', tau=1.0),
                 contrast_loss: Optional[dict] = None,
                 contrast_weight: Optional[float] = None,
                 class_counts: Optional[Sequence[int]] = None,
                 posthoc_tau: float = 0.0,
                 proto_dims: Optional[Sequence[int]] = None,
                 topk: Union[int, Tuple[int]] = (1, ),
                 init_cfg: Optional[dict] = None):
        check_int('num_classes', num_classes)
        check_int('in_channels', in_channels)
        check_choice('classifier', classifier, ('linear', 'cosine'))
        if loss is not None and not isinstance(loss, nn.Module):
            loss = MODELS.build(loss)
        # ClsHead builds any loss it is given; None (stage 1) is set after.
        super().__init__(
            loss=loss if loss is not None else nn.Identity(),
            topk=topk,
            init_cfg=init_cfg)
        if loss is None:
            self.loss_module = None
        self.topk = (topk, ) if isinstance(topk, int) else tuple(topk)
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.posthoc_tau = float(posthoc_tau)

        # Stage 1 (loss=None) builds only what its loss uses: under DDP a
        # parameter that no loss reaches stalls the gradient reduction.
        # BCL's prototypes come from the classifier rows (no bias); ProCo
        # and SupCon need no classifier at all.
        needs_rows = loss is not None or self._needs_prototypes(contrast_loss)
        if not needs_rows:
            self.fc = None
        elif classifier == 'cosine':
            self.fc = CosineClassifier(in_channels, num_classes, cosine_scale)
        else:
            self.fc = nn.Linear(
                in_channels, num_classes, bias=loss is not None)

        # NaN until ClassCountsHook (or a checkpoint) sets it; a fixed shape,
        # so checkpoints load without a size mismatch.
        self.register_buffer(
            'log_prior', torch.full((num_classes, ),
                                    math.nan,
                                    dtype=torch.float64))
        self.prior_is_set = False

        self.contrast_branch = None
        if contrast_loss is not None:
            self.contrast_branch = ContrastiveBranch(
                in_channels,
                num_classes,
                contrast_loss,
                proj_dims=proj_dims,
                proto_dims=proto_dims,
                contrast_weight=contrast_weight)
        elif contrast_weight is not None:
            raise ValueError('contrast_weight is set but contrast_loss is '
                             'None; give the contrastive loss or drop it')
        if class_counts is not None:
            self.set_class_counts(class_counts)

    @staticmethod
    def _needs_prototypes(contrast_loss) -> bool:
        """Whether the contrastive loss takes class prototypes (BCL)."""
        if contrast_loss is None:
            return False
        if isinstance(contrast_loss, nn.Module):
            return bool(getattr(contrast_loss, 'needs_prototypes', False))
        loss_type = contrast_loss['type']
        loss_cls = MODELS.get(loss_type) if isinstance(loss_type,
                                                       str) else loss_type
        return bool(getattr(loss_cls, 'needs_prototypes', False))

    @property
    def classifier_weight(self) -> Optional[torch.Tensor]:
        """The classifier rows ``(C, in_channels)``, None in a stage-1
        head without a classifier."""
        return None if self.fc is None else self.fc.weight

    def set_class_counts(self, class_counts) -> None:
        """Set the prior used by post-hoc adjustment (the losses get their
        counts from :class:`mmlt.ClassCountsHook` directly)."""
        log_prior = log_prior_from_counts(class_counts)
        if log_prior.numel() != self.num_classes:
            raise ValueError(
                f'class_counts has {log_prior.numel()} entries but the head '
                f'has num_classes={self.num_classes}; the dataset and the '
                'config disagree on the number of classes')
        self.log_prior.copy_(log_prior)
        self.prior_is_set = True

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        rename_legacy_branch_keys(state_dict, prefix, 'contrast_branch')
        if self.fc is None or getattr(self.fc, 'bias', None) is None:
            # Stage-1 checkpoints written when the head still built an
            # unused classifier (or its unused bias).
            unused = ('fc.' if self.fc is None else 'fc.bias')
            for key in [k for k in state_dict
                        if k.startswith(prefix + unused)]:
                state_dict.pop(key)
        key = prefix + 'log_prior'
        if key in state_dict and state_dict[key].numel() == 0:
            # Written before the prior had a fixed shape: nothing to load.
            state_dict.pop(key)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self.prior_is_set = not torch.isnan(self.log_prior).any().item()

    # ---- the MMPretrain head protocol ----------------------------------
    def pre_logits(self, feats: Tuple[torch.Tensor]) -> torch.Tensor:
        """The last stage's (neck-pooled) features, ``(V*B, in_channels)``."""
        return pooled_features(feats, self.in_channels)

    def forward(self, feats: Tuple[torch.Tensor]) -> torch.Tensor:
        """Classifier logits of every row."""
        return self._classify(self.pre_logits(feats))

    def _classify(self, x: torch.Tensor) -> torch.Tensor:
        if self.fc is None:
            raise RuntimeError(
                'this head has no classifier (loss=None and a contrastive '
                'loss without prototypes: stage 1 of two-stage training); '
                'evaluate the backbone with a linear probe (configs/'
                'two_stage/linear-probe_*.py) instead')
        return self.fc(x)

    @torch.no_grad()
    def _topk_accuracy(self, cls_score: torch.Tensor,
                       labels: torch.Tensor) -> dict:
        """``accuracy_top-k`` (percent) of ``cls_score``, on the device: no
        host sync. Not MMPretrain's ``Accuracy.calculate``: that one rounds
        differently (``sum * (100 / n)``), returns ``[[tensor(1,)]]`` and
        applies a score threshold by default."""
        top = cls_score.topk(max(self.topk), dim=1).indices
        hits = top == labels[:, None]
        return {
            f'accuracy_top-{k}': hits[:, :k].any(dim=1).float().mean() * 100
            for k in self.topk
        }

    def loss(self, feats: Tuple[torch.Tensor], data_samples, **kwargs) -> dict:
        """Classifier loss on view 1, contrastive loss on the other views."""
        x = self.pre_logits(feats)
        batch = len(data_samples)
        if batch == 0 or x.size(0) % batch:
            raise ValueError(
                f'{x.size(0)} feature rows for {batch} data samples: the rows '
                'must be V views of each sample, stacked view-major')
        num_views = x.size(0) // batch
        labels = torch.cat([ds.gt_label.reshape(-1)
                            for ds in data_samples]).to(x.device)
        if labels.numel() != batch:
            raise ValueError('each data sample needs exactly one gt_label')

        losses = dict()
        if self.loss_module is None:
            # Stage 1 of two-stage training: no classifier, every view is a
            # contrastive view (the classifier rows still give BCL its
            # prototypes, learnt through the contrastive loss alone).
            if self.contrast_branch is None:
                raise ValueError('loss=None and contrast_loss=None: the head '
                                 'has nothing to train')
            losses['loss_contrast'] = self.contrast_branch(
                x, labels, num_views, self.classifier_weight)
            return losses

        cls_score = self.fc(x[:batch])
        losses['loss_cls'] = self._get_loss(cls_score, data_samples,
                                            **kwargs)['loss']
        losses.update(self._topk_accuracy(cls_score, labels))

        if self.contrast_branch is not None and num_views > 1:
            losses['loss_contrast'] = self.contrast_branch(
                x[batch:], labels, num_views - 1, self.classifier_weight)
        return losses

    def predict(self, feats: Tuple[torch.Tensor], data_samples=None):
        """Predict with the classifier only (first view when several)."""
        x = self.pre_logits(feats)
        if data_samples is not None and len(data_samples) and \
                x.size(0) != len(data_samples):
            x = x[:len(data_samples)]
        cls_score = self._classify(x)
        if self.posthoc_tau:
            if not self.prior_is_set:
                raise RuntimeError(
                    f'posthoc_tau={self.posthoc_tau} needs the class prior, '
                    'which is not set: add mmlt.ClassCountsHook to the '
                    'config, pass class_counts, or load a checkpoint that '
                    'holds head.log_prior')
            cls_score = cls_score - self.posthoc_tau * self.log_prior.to(
                cls_score)
        return self._get_predictions(cls_score, data_samples)
