"""A two-fc RoI box head whose shared feature also feeds a contrastive branch.

The contrastive branch is the detection counterpart of
:class:`mmlt.ContrastiveClsHead`: ProCo (Du et al., TPAMI 2024), BCL (Zhu et
al., CVPR 2022) or SupCon (Khosla et al., NeurIPS 2020) applied to the
foreground RoIs of a two-stage detector.
"""
import inspect
from typing import Optional, Sequence, Tuple

import torch.nn.functional as F
from mmdet.models.roi_heads.bbox_heads import Shared2FCBBoxHead
from torch import Tensor

from mmlt.models.heads.contrastive_cls_head import _build_loss, build_mlp
from mmlt.registry import MODELS


@MODELS.register_module()
class ContrastiveBBoxHead(Shared2FCBBoxHead):
    """:class:`Shared2FCBBoxHead` plus a projection MLP on the shared feature.

    The box head is MMDetection's: two shared fcs, then the classifier
    ``fc_cls`` (trained with the head's own ``loss_cls``: cross-entropy,
    Seesaw, ``mmlt.DetLogitAdjustLoss`` ...) and the box regressor ``fc_reg``.
    In training, :class:`mmlt.ContrastiveRoIHead` also asks for the shared-fc
    feature ``h`` of every RoI and hands the foreground RoIs' features and
    labels to :meth:`loss_contrast`::

        z = normalize(projector(h_fg))          # (N_fg, feat_dim)
        loss_contrast = contrast_weight * contrast_loss(z, y_fg)

    so the contrastive gradient reaches the shared fcs and everything below
    them, and the loss (and, for ProCo, its vMF estimator) sees exactly the
    sampled foreground RoIs. Prediction calls :meth:`forward` without
    ``return_shared_feats`` and never runs the projector: inference is that of
    :class:`Shared2FCBBoxHead`.

    Args:
        proj_dims (Sequence[int]): Hidden and output sizes of the projection
            MLP applied to the ``fc_out_channels``-dimensional shared feature
            (Linear-ReLU blocks, a plain Linear last; no BatchNorm, because a
            rank may have one or no foreground RoI). Defaults to
            ``(1024, 128)``, i.e. a 1024-1024-128 MLP.
        contrast_loss (dict, optional): ``mmlt.ProCoLoss``, ``mmlt.BCLLoss``
            or ``mmlt.SupConLoss``; ``num_classes`` and ``feat_dim`` are
            filled in where the loss takes them. None disables the branch (the
            head is then :class:`Shared2FCBBoxHead`). Defaults to None.
        contrast_weight (float): Multiplies the contrastive loss. Defaults to
            0.5.
        proto_dims (Sequence[int], optional): MLP from the classifier rows to
            the class prototypes of losses that take ``prototypes`` (BCL).
            Defaults to ``(fc_out_channels,) + proj_dims``.
        **kwargs: Arguments of :class:`Shared2FCBBoxHead` (``num_classes``,
            ``fc_out_channels``, ``loss_cls`` ...).

    Shape:
        - forward input: RoI features ``(N, in_channels, 7, 7)``.
        - cls_score: ``(N, num_classes + 1)`` (``+ 2`` with Seesaw).
        - bbox_pred: ``(N, 4 * num_classes)`` (4 if class-agnostic).
        - shared feature: ``(N, fc_out_channels)``.
        - contrastive feature: ``(N_fg, proj_dims[-1])``, unit rows.
    """

    def __init__(self,
                 *args,
                 proj_dims: Sequence[int] = (1024, 128),
                 contrast_loss: Optional[dict] = None,
                 contrast_weight: float = 0.5,
                 proto_dims: Optional[Sequence[int]] = None,
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if not contrast_weight >= 0:
            raise ValueError(
                f'contrast_weight must be >= 0, got {contrast_weight!r}')
        self.contrast_weight = float(contrast_weight)
        self.projector = None
        self.prototype_mlp = None
        self.contrast_loss = None
        if contrast_loss is None:
            return
        proj_dims = tuple(int(dim) for dim in proj_dims)
        if len(proj_dims) < 1 or min(proj_dims) < 1:
            raise ValueError(f'proj_dims={proj_dims}; expected positive '
                             'sizes ending with the contrastive dimension')
        self.feat_dim = proj_dims[-1]
        self.projector = build_mlp((self.fc_out_channels, ) + proj_dims,
                                   norm=False)
        self.contrast_loss = _build_loss(
            contrast_loss,
            num_classes=self.num_classes,
            feat_dim=self.feat_dim)
        if self._loss_takes_prototypes():
            dims = tuple(proto_dims) if proto_dims else (
                (self.cls_last_dim, ) + proj_dims)
            if dims[0] != self.cls_last_dim or dims[-1] != self.feat_dim:
                raise ValueError(
                    f'proto_dims={dims} must start at the classifier input '
                    f'size {self.cls_last_dim} and end at the contrastive '
                    f'dimension {self.feat_dim}')
            self.prototype_mlp = build_mlp(dims, norm=False)

    @property
    def with_contrast(self) -> bool:
        """Whether the head has a contrastive branch."""
        return self.contrast_loss is not None

    def _loss_takes_prototypes(self) -> bool:
        try:
            params = inspect.signature(self.contrast_loss.forward).parameters
        except (TypeError, ValueError):
            return False
        return 'prototypes' in params

    def forward(self,
                x: Tensor,
                return_shared_feats: bool = False) -> Tuple[Tensor, ...]:
        """Classification scores and box deltas (and the shared feature).

        Args:
            x (Tensor): RoI features ``(N, in_channels, H, W)``.
            return_shared_feats (bool): Also return the output of the shared
                fcs. :class:`ContrastiveRoIHead` sets it in training only.
                Defaults to False.

        Returns:
            tuple[Tensor]: ``(cls_score, bbox_pred)``, plus the shared feature
            ``(N, fc_out_channels)`` when ``return_shared_feats``.
        """
        for conv in self.shared_convs:
            x = conv(x)
        if self.num_shared_fcs > 0:
            if self.with_avg_pool:
                x = self.avg_pool(x)
            x = x.flatten(1)
            for fc in self.shared_fcs:
                x = self.relu(fc(x))
        shared_feats = x
        cls_score = self.fc_cls(self._branch(
            x, self.cls_convs, self.cls_fcs)) if self.with_cls else None
        bbox_pred = self.fc_reg(self._branch(
            x, self.reg_convs, self.reg_fcs)) if self.with_reg else None
        if return_shared_feats:
            return cls_score, bbox_pred, shared_feats
        return cls_score, bbox_pred

    def _branch(self, x: Tensor, convs, fcs) -> Tensor:
        """The classification or regression branch after the shared part."""
        for conv in convs:
            x = conv(x)
        if x.dim() > 2:
            if self.with_avg_pool:
                x = self.avg_pool(x)
            x = x.flatten(1)
        for fc in fcs:
            x = self.relu(fc(x))
        return x

    def project(self, shared_feats: Tensor) -> Tensor:
        """Unit contrastive features ``normalize(projector(h))``.

        Args:
            shared_feats (Tensor): Shared-fc features ``(N, fc_out_channels)``.

        Returns:
            Tensor: ``(N, feat_dim)`` unit rows.
        """
        if self.projector is None:
            raise RuntimeError('this ContrastiveBBoxHead has no contrastive '
                               'branch (contrast_loss=None)')
        return F.normalize(self.projector(shared_feats), dim=1)

    def class_prototypes(self) -> Tensor:
        """Unit class prototypes ``normalize(MLP(W))`` from the classifier.

        ``W`` holds the classifier rows of the ``num_classes`` object classes
        (the background row, and Seesaw's objectness rows, are left out).

        Returns:
            Tensor: ``(num_classes, feat_dim)``.
        """
        weight = self.fc_cls.weight[:self.num_classes]
        return F.normalize(self.prototype_mlp(weight), dim=1)

    def loss_contrast(self, fg_shared_feats: Tensor,
                      fg_labels: Tensor) -> dict:
        """The contrastive loss of the foreground RoIs.

        Every rank must call this once per step, also with no foreground RoI
        (``N_fg = 0``): the losses gather features, labels and vMF statistics
        across ranks. With ``N_fg = 0`` the loss is a zero that is still
        connected to the projector (so DDP sees a gradient for every
        parameter and the gathers' backward passes run on every rank).

        Args:
            fg_shared_feats (Tensor): Shared-fc features of the foreground
                RoIs, ``(N_fg, fc_out_channels)``.
            fg_labels (Tensor): Their classes ``(N_fg,)`` in
                ``[0, num_classes)``.

        Returns:
            dict[str, Tensor]: ``{'loss_contrast': loss}``.
        """
        if fg_labels.dim() != 1 or fg_labels.numel() != \
                fg_shared_feats.shape[0]:
            raise ValueError(
                f'fg_labels have shape {tuple(fg_labels.shape)}; expected one '
                f'label per feature row, ({fg_shared_feats.shape[0]},)')
        if fg_labels.numel() and (int(fg_labels.min()) < 0 or int(
                fg_labels.max()) >= self.num_classes):
            raise ValueError(
                f'fg_labels must be object classes in [0, {self.num_classes})'
                f', got min {int(fg_labels.min())} and max '
                f'{int(fg_labels.max())}; background RoIs (label '
                f'{self.num_classes}) must not reach the contrastive loss')
        features = self.project(fg_shared_feats)
        extra = {}
        if self.prototype_mlp is not None:
            extra['prototypes'] = self.class_prototypes()
        loss = self.contrast_loss(features, fg_labels, **extra)
        # The losses reduce an empty batch to a zero that depends on their
        # inputs; this keeps the projector's parameters in the graph too.
        loss = loss + 0.0 * features.sum()
        return dict(loss_contrast=self.contrast_weight * loss)
