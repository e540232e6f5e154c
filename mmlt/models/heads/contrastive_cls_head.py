"""A classification head with a contrastive branch (ProCo, BCL, SupCon)."""
import inspect
import math
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule

from mmlt.registry import MODELS


class CosineClassifier(nn.Module):
    """``scale * cos(x, w_c)``: a linear classifier on unit vectors.

    Args:
        in_channels (int): Input feature dimension.
        num_classes (int): Number of classes.
        scale (float): The logit scale s (30 in ProCo/BCL on ImageNet-LT).
    """

    def __init__(self, in_channels: int, num_classes: int, scale: float = 30.):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_classes, in_channels))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * F.normalize(x, dim=1) @ F.normalize(
            self.weight, dim=1).t()


def build_mlp(dims: Sequence[int], norm: bool = True) -> nn.Sequential:
    """Linear-BN-ReLU blocks ending with a plain Linear layer."""
    layers: List[nn.Module] = []
    for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
        last = i == len(dims) - 2
        layers.append(nn.Linear(d_in, d_out, bias=last or not norm))
        if not last:
            if norm:
                layers.append(nn.BatchNorm1d(d_out))
            layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def _accepts(cls, name: str) -> bool:
    try:
        return name in inspect.signature(cls.__init__).parameters
    except (TypeError, ValueError):
        return False


def _build_loss(cfg, **defaults):
    """Build a loss config, filling in defaults the loss's __init__ accepts."""
    if cfg is None or isinstance(cfg, nn.Module):
        return cfg
    cfg = dict(cfg)
    loss_cls = MODELS.get(cfg['type']) if isinstance(cfg['type'],
                                                     str) else cfg['type']
    if loss_cls is None:
        raise KeyError(f'loss type {cfg["type"]!r} is not registered; mmlt '
                       "losses are named 'mmlt.ProCoLoss', 'mmlt.BCLLoss', "
                       "'mmlt.SupConLoss', 'mmlt.LogitAdjustLoss'")
    for key, value in defaults.items():
        if _accepts(loss_cls, key):
            cfg.setdefault(key, value)
    return MODELS.build(cfg)


@MODELS.register_module()
class ContrastiveClsHead(BaseModule):
    """Classifier plus a contrastive projection branch for long-tailed data.

    The layout of ProCo (Du et al., TPAMI 2024) and BCL (Zhu et al., CVPR
    2022): the backbone sees all views of a batch together (so BatchNorm
    statistics mix them), the first view feeds the classifier trained with a
    logit-adjusted loss, and the other views feed a projection MLP whose
    L2-normalised outputs go to a contrastive loss::

        loss = cls_loss(classifier(x_1), y)
             + contrast_weight * contrast_loss(normalize(proj(x_2..V)), y)

    Prediction uses the classifier only, so inference costs nothing extra.

    The views arrive stacked along the batch dimension, view-major: with
    ``B`` data samples the head receives ``V * B`` feature rows, rows
    ``[v*B, (v+1)*B)`` being view ``v`` (see
    :class:`mmlt.MultiViewDataPreprocessor`). With a single view (testing, a
    CE baseline, or classifier re-training) the contrastive branch is skipped.

    Args:
        num_classes (int): Number of classes.
        in_channels (int): Feature dimension from the neck (2048 for ResNet-50).
        proj_dims (Sequence[int]): Hidden and output sizes of the projection
            MLP, e.g. ``(2048, 1024)`` (ImageNet-LT) or ``(512, 128)`` (CIFAR).
        classifier (str): ``'linear'`` or ``'cosine'``.
        cosine_scale (float): Logit scale of the cosine classifier.
        loss (dict): Classifier loss. Defaults to logit adjustment
            (``mmlt.LogitAdjustLoss``, tau 1).
        contrast_loss (dict, optional): ``mmlt.ProCoLoss``, ``mmlt.BCLLoss`` or
            ``mmlt.SupConLoss``; ``num_classes``/``feat_dim`` are filled in.
            None disables the branch (a plain LA or CE baseline).
        contrast_weight (float): Weight of the contrastive loss (alpha of
            ProCo, lambda of BCL).
        class_counts (Sequence[int], optional): Training counts per class; or
            set later by :class:`mmlt.ClassCountsHook`. Passed to the losses
            and used by post-hoc adjustment.
        posthoc_tau (float): Post-hoc logit adjustment at prediction,
            ``logits - tau * log(prior)``; 0 (default) predicts with the raw
            classifier logits as ProCo and BCL do.
        proto_dims (Sequence[int], optional): MLP that maps classifier
            weights to class prototypes for losses that take ``prototypes``
            (BCL). Defaults to ``(in_channels,) + proj_dims``.
        topk (int | Sequence[int]): Accuracy reported in the training log.
        init_cfg (dict, optional): Initialisation config.
    """

    def __init__(self,
                 num_classes: int,
                 in_channels: int,
                 proj_dims: Sequence[int] = (2048, 1024),
                 classifier: str = 'linear',
                 cosine_scale: float = 30.0,
                 loss: dict = dict(type='mmlt.LogitAdjustLoss', tau=1.0),
                 contrast_loss: Optional[dict] = None,
                 contrast_weight: float = 1.0,
                 class_counts: Optional[Sequence[int]] = None,
                 posthoc_tau: float = 0.0,
                 proto_dims: Optional[Sequence[int]] = None,
                 topk: Union[int, Tuple[int]] = (1, ),
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(
                f'num_classes must be a positive int, got {num_classes!r}')
        if not isinstance(in_channels, int) or in_channels < 1:
            raise ValueError(
                f'in_channels must be a positive int, got {in_channels!r}')
        if classifier not in ('linear', 'cosine'):
            raise ValueError(f"classifier={classifier!r}; expected 'linear' "
                             "or 'cosine'")
        if contrast_weight < 0:
            raise ValueError(
                f'contrast_weight must be >= 0, got {contrast_weight}')
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.contrast_weight = float(contrast_weight)
        self.posthoc_tau = float(posthoc_tau)
        self.topk = (topk, ) if isinstance(topk, int) else tuple(topk)

        if classifier == 'cosine':
            self.fc = CosineClassifier(in_channels, num_classes, cosine_scale)
        else:
            self.fc = nn.Linear(in_channels, num_classes)

        self.loss_module = _build_loss(loss, num_classes=num_classes)
        self.register_buffer(
            'log_prior', torch.zeros(0, dtype=torch.float64), persistent=True)

        self.contrast_loss = None
        self.projector = None
        self.prototype_mlp = None
        if contrast_loss is not None:
            proj_dims = tuple(proj_dims)
            if len(proj_dims) < 1:
                raise ValueError('proj_dims needs at least the output size')
            self.feat_dim = proj_dims[-1]
            self.projector = build_mlp((in_channels, ) + proj_dims)
            self.contrast_loss = _build_loss(
                contrast_loss, num_classes=num_classes, feat_dim=self.feat_dim)
            if self._loss_takes_prototypes():
                dims = tuple(proto_dims) if proto_dims else (
                    (in_channels, ) + proj_dims)
                if dims[-1] != self.feat_dim or dims[0] != in_channels:
                    raise ValueError(
                        f'proto_dims={dims} must start at in_channels='
                        f'{in_channels} and end at the projection size '
                        f'{self.feat_dim}')
                self.prototype_mlp = build_mlp(dims)
        if class_counts is not None:
            self.set_class_counts(class_counts)

    def _loss_takes_prototypes(self) -> bool:
        try:
            params = inspect.signature(self.contrast_loss.forward).parameters
        except (TypeError, ValueError):
            return False
        return 'prototypes' in params

    def set_class_counts(self, class_counts) -> None:
        """Set the class prior here (post-hoc adjustment) and in the losses."""
        counts = torch.as_tensor(class_counts, dtype=torch.float64).flatten()
        if counts.numel() != self.num_classes:
            raise ValueError(
                f'class_counts has {counts.numel()} entries but the head has '
                f'num_classes={self.num_classes}; the dataset and the config '
                'disagree on the number of classes')
        if (counts <= 0).any() or not torch.isfinite(counts).all():
            raise ValueError('class_counts must be positive and finite; class '
                             f'{int(torch.nonzero(~(counts > 0))[0])} has '
                             'no training samples')
        self.log_prior = (counts / counts.sum()).log().to(
            self.log_prior.device)
        for loss in (self.loss_module, self.contrast_loss):
            if callable(getattr(loss, 'set_class_counts', None)):
                loss.set_class_counts(class_counts)

    # ---- the MMPretrain head protocol ----------------------------------
    def pre_logits(self, feats: Tuple[torch.Tensor]) -> torch.Tensor:
        """The last stage's (neck-pooled) features, ``(V*B, in_channels)``."""
        x = feats[-1] if isinstance(feats, (tuple, list)) else feats
        if x.dim() != 2 or x.size(1) != self.in_channels:
            raise ValueError(
                f'expected pooled features of shape (N, {self.in_channels}), '
                f'got {tuple(x.shape)}; add a GlobalAveragePooling neck or fix '
                'in_channels')
        return x

    def forward(self, feats: Tuple[torch.Tensor]) -> torch.Tensor:
        """Classifier logits of every row (all views)."""
        return self.fc(self.pre_logits(feats))

    @staticmethod
    def _labels(data_samples) -> torch.Tensor:
        return torch.cat([ds.gt_label.reshape(-1) for ds in data_samples])

    def loss(self, feats: Tuple[torch.Tensor], data_samples, **kwargs) -> dict:
        """Classifier loss on view 1, contrastive loss on the other views."""
        x = self.pre_logits(feats)
        batch = len(data_samples)
        if batch == 0 or x.size(0) % batch:
            raise ValueError(
                f'{x.size(0)} feature rows for {batch} data samples: the rows '
                'must be V views of each sample, stacked view-major')
        num_views = x.size(0) // batch
        labels = self._labels(data_samples).to(x.device)
        if labels.numel() != batch:
            raise ValueError('each data sample needs exactly one gt_label')

        losses = dict()
        cls_score = self.fc(x[:batch])
        if 'gt_score' in data_samples[0]:  # mixup/cutmix soft targets
            target = torch.stack([ds.gt_score for ds in data_samples])
        else:
            target = labels
        losses['loss_cls'] = self.loss_module(cls_score, target, **kwargs)
        with torch.no_grad():
            acc = (cls_score.argmax(1) == labels).float().mean() * 100
        losses['accuracy_top-1'] = acc

        if self.contrast_loss is not None and num_views > 1:
            z = F.normalize(self.projector(x[batch:]), dim=1)
            # (V-1)*B rows, view-major -> (B, V-1, p)
            z = z.view(num_views - 1, batch, -1).transpose(0, 1)
            extra = {}
            if self.prototype_mlp is not None:
                extra['prototypes'] = F.normalize(
                    self.prototype_mlp(self._classifier_weight()), dim=1)
            losses['loss_contrast'] = self.contrast_weight * \
                self.contrast_loss(z, labels, **extra)
        return losses

    def _classifier_weight(self) -> torch.Tensor:
        return self.fc.weight

    def predict(self, feats: Tuple[torch.Tensor], data_samples=None):
        """Predict with the classifier only (first view when several)."""
        x = self.pre_logits(feats)
        if data_samples is not None and len(data_samples) and \
                x.size(0) != len(data_samples):
            x = x[:len(data_samples)]
        cls_score = self.fc(x)
        if self.posthoc_tau and self.log_prior.numel():
            cls_score = cls_score - self.posthoc_tau * self.log_prior.to(
                cls_score)
        return self._get_predictions(cls_score, data_samples)

    @staticmethod
    def _get_predictions(cls_score, data_samples):
        from mmpretrain.structures import DataSample
        pred_scores = F.softmax(cls_score, dim=1)
        pred_labels = pred_scores.argmax(dim=1, keepdim=True).detach()
        out = []
        if data_samples is None:
            data_samples = [None] * pred_scores.size(0)
        for data_sample, score, label in zip(data_samples, pred_scores,
                                             pred_labels):
            if data_sample is None:
                data_sample = DataSample()
            data_sample.set_pred_score(score).set_pred_label(label)
            out.append(data_sample)
        return out
