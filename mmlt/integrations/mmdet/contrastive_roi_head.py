"""A standard RoI head that adds a contrastive loss on the foreground RoIs."""
from typing import List, Tuple

import torch
from mmdet.models.task_modules.samplers import SamplingResult
from mmdet.structures.bbox import bbox2roi, bbox_overlaps
from torch import Tensor

from mmlt.engine.protocols import GathersAcrossRanks
from mmlt.models.losses import ProCoLoss
from mmlt.registry import MODELS
from mmlt.utils.validation import check_number
from .per_class_topk_roi_head import PerClassTopKRoIHead


@MODELS.register_module()
class ContrastiveRoIHead(PerClassTopKRoIHead, GathersAcrossRanks):
    """:class:`StandardRoIHead` whose box loss adds a contrastive term.

    Training (:meth:`bbox_loss`): the sampled RoIs go through the box head
    once; the usual classification and regression losses are computed by
    ``bbox_head.loss_and_target``, and the foreground RoIs whose IoU with
    their ground-truth box is at least ``contrast_iou_thr`` (the ground-truth
    boxes the sampler adds as proposals have IoU 1) pass their shared-fc
    features and labels to ``bbox_head.loss_contrast``. The contrastive loss
    and, for ProCo, its vMF estimator therefore see exactly those RoIs. Loose
    crops blur the class statistics, so contrastive detection (FSCE, Sun et
    al., CVPR 2021) uses a higher threshold than the classifier's positives:
    the LVIS configs set 0.7. The mask branch is untouched.

    Prediction is :class:`StandardRoIHead`'s: the box head is called without
    the shared feature and the projector never runs, with the AP-fixed test
    options of :class:`mmlt.PerClassTopKRoIHead` (``dets_per_class``,
    ``mask_chunk`` ...).

    Use it with a box head that has ``loss_contrast`` and
    ``forward(x, return_shared_feats)``, such as
    :class:`mmlt.ContrastiveBBoxHead`. A box head without a contrastive
    branch (``contrast_loss=None``) makes this head a
    :class:`StandardRoIHead`.

    Args:
        contrast_iou_thr (float): Minimum IoU of a foreground RoI with its
            ground-truth box to enter the contrastive loss. Defaults to 0.5,
            the assigner's usual positive threshold (every foreground RoI).
        contrast_iou_weight (bool): Weight each selected RoI by its IoU, in
            the loss (a weighted mean) and in ProCo's class statistics, so
            that tight crops count more: FSCE's re-weighting ``f(u) =
            1[u >= thr] g(u)`` with ``g(u) = u``. Needs ``mmlt.ProCoLoss``
            (the loss that takes per-sample weights). Defaults to False
            (``g = 1``, which FSCE found to work as well).
        **kwargs: Arguments of :class:`StandardRoIHead`.
    """

    def __init__(self,
                 *args,
                 contrast_iou_thr: float = 0.5,
                 contrast_iou_weight: bool = False,
                 **kwargs):
        super().__init__(*args, **kwargs)
        self.contrast_iou_thr = check_number(
            'contrast_iou_thr', contrast_iou_thr, minimum=0)
        self.contrast_iou_weight = bool(contrast_iou_weight)
        if self.contrast_iou_weight and self.bbox_head.with_contrast:
            loss = self.bbox_head.contrast_branch.loss
            if not isinstance(loss, ProCoLoss):
                raise ValueError(
                    f'contrast_iou_weight=True needs mmlt.ProCoLoss (per-RoI '
                    f'weights), got {type(loss).__name__}')

    def init_bbox_head(self, bbox_roi_extractor: dict,
                       bbox_head: dict) -> None:
        super().init_bbox_head(bbox_roi_extractor, bbox_head)
        missing = [
            name for name in ('loss_contrast', 'with_contrast')
            if not hasattr(self.bbox_head, name)
        ]
        if missing:
            raise ValueError(
                f'ContrastiveRoIHead needs a box head with a contrastive '
                f'branch (e.g. mmlt.ContrastiveBBoxHead); '
                f'{type(self.bbox_head).__name__} lacks {missing}')

    def _bbox_forward(self,
                      x: Tuple[Tensor],
                      rois: Tensor,
                      return_shared_feats: bool = False) -> dict:
        """Box head forward, optionally keeping the shared-fc features.

        Args:
            x (tuple[Tensor]): Multi-level image features.
            rois (Tensor): ``(n, 5)`` RoIs, the first column the image index.
            return_shared_feats (bool): Add ``'shared_feats'``
                ``(n, fc_out_channels)`` to the result. Defaults to False,
                which is exactly :meth:`StandardRoIHead._bbox_forward`.

        Returns:
            dict[str, Tensor]: ``cls_score``, ``bbox_pred``, ``bbox_feats``
            (and ``shared_feats``).
        """
        if not return_shared_feats:
            return super()._bbox_forward(x, rois)
        bbox_feats = self.bbox_roi_extractor(
            x[:self.bbox_roi_extractor.num_inputs], rois)
        if self.with_shared_head:
            bbox_feats = self.shared_head(bbox_feats)
        cls_score, bbox_pred, shared_feats = self.bbox_head(
            bbox_feats, return_shared_feats=True)
        return dict(
            cls_score=cls_score,
            bbox_pred=bbox_pred,
            bbox_feats=bbox_feats,
            shared_feats=shared_feats)

    def bbox_loss(self, x: Tuple[Tensor],
                  sampling_results: List[SamplingResult]) -> dict:
        """Box losses plus the contrastive loss of the foreground RoIs.

        Args:
            x (tuple[Tensor]): Multi-level image features.
            sampling_results (list[SamplingResult]): Sampled RoIs per image.

        Returns:
            dict: As :meth:`StandardRoIHead.bbox_loss`; ``loss_bbox`` also
            holds ``loss_contrast`` when the box head has the branch.
        """
        if not self.bbox_head.with_contrast:
            return super().bbox_loss(x, sampling_results)
        rois = bbox2roi([res.priors for res in sampling_results])
        bbox_results = self._bbox_forward(x, rois, return_shared_feats=True)
        bbox_loss_and_target = self.bbox_head.loss_and_target(
            cls_score=bbox_results['cls_score'],
            bbox_pred=bbox_results['bbox_pred'],
            rois=rois,
            sampling_results=sampling_results,
            rcnn_train_cfg=self.train_cfg)
        losses = dict(bbox_loss_and_target['loss_bbox'])

        labels = bbox_loss_and_target['bbox_targets'][0]
        ious = self._roi_ious(sampling_results)
        # Background RoIs carry label num_classes.
        selected = (labels >= 0) & (labels < self.bbox_head.num_classes) & (
            ious >= self.contrast_iou_thr)
        # Called on every rank, with no selected RoI if need be: the loss
        # gathers across ranks.
        losses.update(
            self._contrast_loss(bbox_results['shared_feats'], labels, ious,
                                selected))
        bbox_results.update(loss_bbox=losses)
        return bbox_results

    def _contrast_loss(self, shared_feats: Tensor, labels: Tensor,
                       ious: Tensor, selected: Tensor) -> dict:
        """The branch's loss over the ``selected`` RoIs ``(N,)`` bool.

        ProCo scores and counts each row on its own, so it takes every RoI
        with weight 0 on the others (no boolean selection, whose size a GPU
        would have to read back); the in-batch contrastive losses (SupCon,
        BCL) see the selected rows only.
        """
        if not isinstance(self.bbox_head.contrast_branch.loss, ProCoLoss):
            return self.bbox_head.loss_contrast(shared_feats[selected],
                                                labels[selected])
        weight = selected.to(ious.dtype)
        if self.contrast_iou_weight:
            weight = weight * ious
        avg_factor = weight.sum() if self.contrast_iou_weight else \
            selected.sum()
        labels = torch.where(selected, labels, torch.zeros_like(labels))
        return self.bbox_head.loss_contrast(shared_feats, labels, weight,
                                            avg_factor)

    def set_max_batch_size(self, max_batch_size: int) -> None:
        """Bound the branch's gathers: at most ``max_batch_size`` images
        of ``train_cfg.sampler.num`` sampled RoIs each per rank."""
        if not self.bbox_head.with_contrast or not self.train_cfg:
            return
        loss = self.bbox_head.contrast_branch.loss
        if isinstance(loss, GathersAcrossRanks):
            loss.set_max_batch_size(max_batch_size *
                                    int(self.train_cfg.sampler.num))

    @staticmethod
    def _roi_ious(sampling_results: List[SamplingResult]) -> Tensor:
        """IoU of every sampled RoI with its ground-truth box (0 for
        negatives), in the order of the box head's targets: per image, the
        positives, then the negatives."""
        ious = []
        for result in sampling_results:
            ious.append(
                bbox_overlaps(
                    result.pos_priors, result.pos_gt_bboxes, is_aligned=True))
            ious.append(result.neg_priors.new_zeros(len(result.neg_priors)))
        return torch.cat(ious)
