"""A two-fc RoI box head whose shared feature also feeds a contrastive branch.

The contrastive branch is :class:`mmlt.ContrastiveBranch`, shared with
:class:`mmlt.ContrastiveClsHead`: ProCo (Du et al., TPAMI 2024), BCL (Zhu et
al., CVPR 2022) or SupCon (Khosla et al., NeurIPS 2020) applied to the
foreground RoIs of a two-stage detector.
"""
from typing import Optional, Sequence, Tuple

import torch.nn as nn
from mmdet.models.roi_heads.bbox_heads import Shared2FCBBoxHead
from torch import Tensor

from mmlt.models.heads import ContrastiveBranch
from mmlt.models.heads.contrastive_branch import rename_legacy_branch_keys
from mmlt.registry import MODELS
from mmlt.utils.seeding import branch_random_stream
from mmlt.utils.validation import check_choice

#: What the projector reads (``contrast_input``).
CONTRAST_INPUTS = ('shared', 'detached', 'separate')


@MODELS.register_module()
class ContrastiveBBoxHead(Shared2FCBBoxHead):
    """:class:`Shared2FCBBoxHead` plus a projection MLP on the shared feature.

    The box head is MMDetection's: two shared fcs, then the classifier
    ``fc_cls`` (trained with the head's own ``loss_cls``: cross-entropy,
    Seesaw, ``mmlt.DetLogitAdjustLoss`` ...) and the box regressor ``fc_reg``.
    In training, :class:`mmlt.ContrastiveRoIHead` also asks for the shared-fc
    feature ``h`` of every RoI and hands the foreground RoIs' features and
    labels to :meth:`loss_contrast`::

        loss_contrast = contrast_branch(h_fg, y_fg, num_views=1, W)

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
            or ``mmlt.SupConLoss``; its ``loss_weight`` weights the term.
            None disables the branch (the head is then
            :class:`Shared2FCBBoxHead`). Defaults to None.
        contrast_weight (float, optional): Older key for the contrastive
            loss's ``loss_weight`` (set one of the two). Defaults to None.
        proto_dims (Sequence[int], optional): MLP from the classifier rows to
            the class prototypes of losses that take ``prototypes`` (BCL).
            Defaults to ``(fc_out_channels,) + proj_dims``.
        contrast_input (str): What the projector reads. ``'shared'``
            (default): ``h``, so the contrastive gradient trains the shared
            fcs that ``fc_reg`` and ``fc_cls`` read. ``'detached'``: ``h``
            without its gradient (only the projector learns from the
            branch). ``'separate'``: the branch's own fc (and ReLU) on the
            flattened RoI features, so the gradient reaches the RoI features
            but not the shared fcs. The last two are ablations of the
            branch's effect on box AP (docs/detection.md).
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
                 contrast_weight: Optional[float] = None,
                 proto_dims: Optional[Sequence[int]] = None,
                 contrast_input: str = 'shared',
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.contrast_input = check_choice('contrast_input', contrast_input,
                                           CONTRAST_INPUTS)
        self.contrast_branch = None
        self.contrast_fc = None
        if contrast_input == 'separate' and contrast_loss is not None:
            if self.num_shared_fcs == 0:
                raise ValueError("contrast_input='separate' needs shared fcs "
                                 '(its fc reads what the first one reads)')
            # paired seeds, on a stream of its own (not the projector's)
            with branch_random_stream(stream=1):
                self.contrast_fc = nn.Linear(self.shared_fcs[0].in_features,
                                             self.fc_out_channels)
        if contrast_loss is not None:
            # No BatchNorm: a rank may have one or no foreground RoI.
            self.contrast_branch = ContrastiveBranch(
                self.fc_out_channels,
                self.num_classes,
                contrast_loss,
                proj_dims=proj_dims,
                norm=False,
                proto_dims=proto_dims,
                classifier_channels=self.cls_last_dim,
                contrast_weight=contrast_weight)

    @property
    def with_contrast(self) -> bool:
        """Whether the head has a contrastive branch."""
        return self.contrast_branch is not None

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        rename_legacy_branch_keys(state_dict, prefix, 'contrast_branch')
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

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
            roi_feats = x
            for fc in self.shared_fcs:
                x = self.relu(fc(x))
        shared_feats = x
        cls_score = self.fc_cls(self._branch(
            x, self.cls_convs, self.cls_fcs)) if self.with_cls else None
        bbox_pred = self.fc_reg(self._branch(
            x, self.reg_convs, self.reg_fcs)) if self.with_reg else None
        if return_shared_feats:
            if self.contrast_input == 'detached':
                shared_feats = shared_feats.detach()
            elif self.contrast_fc is not None:
                shared_feats = self.relu(self.contrast_fc(roi_feats))
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

    def loss_contrast(self,
                      fg_shared_feats: Tensor,
                      fg_labels: Tensor,
                      fg_weights: Optional[Tensor] = None,
                      avg_factor: Optional[Tensor] = None) -> dict:
        """The contrastive loss of the foreground RoIs.

        Every rank must call this once per step, also with no foreground RoI
        (``N_fg = 0``): the losses gather features, labels and vMF statistics
        across ranks. With ``N_fg = 0`` the loss is a zero that is still
        connected to the projector (so DDP sees a gradient for every
        parameter and the gathers' backward passes run on every rank).
        Shapes are checked here; label values are not read on the host (the
        RoI head passes only object classes).

        Args:
            fg_shared_feats (Tensor): Shared-fc features of the foreground
                RoIs, ``(N_fg, fc_out_channels)``.
            fg_labels (Tensor): Their classes ``(N_fg,)`` in
                ``[0, num_classes)``.
            fg_weights (Tensor, optional): Per-RoI weights ``(N_fg,)`` of the
                loss and of ProCo's statistics (the RoI head's IoU
                weighting, or 0/1 for rows that take no part). Defaults to
                None.
            avg_factor (Tensor, optional): Divisor of the weighted sum, with
                ``fg_weights``. Defaults to ``fg_weights.sum()`` (a weighted
                mean; a tensor divisor: no host read).

        Returns:
            dict[str, Tensor]: ``{'loss_contrast': loss}``.
        """
        if fg_labels.dim() != 1 or fg_labels.numel() != \
                fg_shared_feats.shape[0]:
            raise ValueError(
                f'fg_labels have shape {tuple(fg_labels.shape)}; expected one '
                f'label per feature row, ({fg_shared_feats.shape[0]},)')
        # The classifier rows of the num_classes object classes (background
        # and Seesaw's objectness rows are left out) make BCL's prototypes.
        extra = {}
        if fg_weights is not None:
            extra = dict(
                weight=fg_weights,
                avg_factor=fg_weights.sum()
                if avg_factor is None else avg_factor)
        loss = self.contrast_branch(fg_shared_feats, fg_labels, 1,
                                    self.fc_cls.weight[:self.num_classes],
                                    **extra)
        # The losses reduce an empty batch to a zero that depends on their
        # inputs; this keeps the projector's parameters in the graph too.
        projector_params = self.contrast_branch.projector[-1].weight
        loss = loss + 0.0 * projector_params.sum()
        return dict(loss_contrast=loss)
