"""Test-time detections for LVIS AP-fixed, as Dave et al. produce them.

AP-fixed (Dave et al., "Evaluating Large-Vocabulary Object Detectors: The
Devil is in the Details", 2021) ranks each class's detections over the whole
dataset and keeps its best K (10,000 on LVIS). Their inference (``infer_topk``)
therefore has no per-image cap and no global score threshold that cuts a
class's list: scores above a floor of 1e-7 are kept unless they are below
their class's K-th best score seen so far in the pass, and the mask head runs
in chunks. :class:`PerClassTopKRoIHead` does the same in MMDetection.
"""
from typing import List, Optional, Tuple

import torch
from mmdet.models.layers import multiclass_nms
from mmdet.models.roi_heads import StandardRoIHead
from mmdet.models.roi_heads.mask_heads import FCNMaskHead
from mmdet.structures.bbox import bbox2roi
from mmdet.structures.mask import encode_mask_results
from mmengine.config import ConfigDict
from mmengine.structures import InstanceData
from torch import Tensor

from mmlt.engine.protocols import HasStandardAPMode
from mmlt.registry import MODELS
from mmlt.utils.validation import check_int, check_number
from .mask_rle import paste_and_encode_masks
from .per_class_topk import merge_best_scores, topk_per_class


@MODELS.register_module()
class PerClassTopKRoIHead(StandardRoIHead, HasStandardAPMode):
    """:class:`StandardRoIHead` with the test-time options of AP-fixed.

    Options of ``test_cfg`` (the ``rcnn`` part of the detector's
    ``test_cfg``); without them the head is exactly
    :class:`StandardRoIHead`. It has no parameters of its own, so any Mask
    R-CNN checkpoint loads.

    * ``dets_per_class`` (K): Dave et al.'s per-class thresholds. The head
      keeps, for every class, the K best scores it has output since the last
      ``train()``/``eval()`` call (one evaluation pass; MMEngine's loops call
      ``eval()`` first). A detection whose score is not above its class's
      K-th best so far is dropped before NMS and the mask head: K better
      detections of the class exist, so it can never be among the class's K
      best over the pass (exact, ties aside). ``score_thr`` is the floor
      (1e-7 in Dave et al.; MMDetection's global 1e-4 would cut the lists of
      classes whose scores a method lowers). ``max_per_img=-1``: no cap.
    * ``standard_max_per_img`` and ``standard_score_thr``: also keep each
      image's best ``standard_max_per_img`` detections above
      ``standard_score_thr`` (300 and 1e-4 on LVIS), the detections of
      MMDetection's usual test setting, so that the standard AP of
      :class:`mmlt.LVISFixedMetric` is MMDetection's.
    * ``mask_chunk``: run the mask head on at most this many detections at a
      time and return the masks RLE-encoded (a list of dicts, as
      ``encode_mask_results`` writes them), so memory follows the chunk, not
      the detections of an image. An ``FCNMaskHead``'s masks are pasted and
      encoded in each box's window only (bit for bit the same RLEs; 31
      times faster at box sides of about 45 pixels, docs/detection.md).
    * ``max_per_class``: after NMS keep at most this many detections of each
      class per image (an older, per-image form of the budget).

    Example (the LVIS v1 setting, docs/detection.md)::

        model = dict(
            roi_head=dict(type='mmlt.PerClassTopKRoIHead'),
            test_cfg=dict(rcnn=dict(
                score_thr=1e-7, max_per_img=-1, dets_per_class=10000,
                standard_max_per_img=300, standard_score_thr=1e-4,
                mask_chunk=1000)))

    The per-class thresholds carry over between ``predict`` calls until the
    next ``train()``/``eval()``: for inference on unrelated images, leave
    ``dets_per_class`` out. :meth:`set_standard_only` (called by
    :class:`mmlt.StandardAPUntilLastHook` for periodic validations) switches
    to MMDetection's setting: ``standard_score_thr`` and
    ``standard_max_per_img`` per image, no per-class thresholds.
    """

    _best_scores: Optional[Tensor] = None
    _standard_only = False

    def set_standard_only(self, standard_only: bool) -> None:
        """Predict with MMDetection's test setting only (True)."""
        self._standard_only = bool(standard_only)

    def train(self, mode: bool = True):
        """Switch mode and start a new pass of the per-class thresholds."""
        self.reset_class_thresholds()
        return super().train(mode)

    def reset_class_thresholds(self) -> None:
        """Forget the K best scores of every class (a new evaluation pass)."""
        self._best_scores = None

    def predict_bbox(self,
                     x: Tuple[Tensor],
                     batch_img_metas: List[dict],
                     rpn_results_list: list,
                     rcnn_test_cfg: Optional[ConfigDict],
                     rescale: bool = False) -> list:
        cfg = rcnn_test_cfg or {}
        if self._standard_only and cfg.get('dets_per_class') is not None:
            return super().predict_bbox(x, batch_img_metas, rpn_results_list,
                                        self._standard_setting(cfg), rescale)
        if cfg.get('dets_per_class') is not None:
            raw = super().predict_bbox(x, batch_img_metas, rpn_results_list,
                                       None, rescale)
            results_list = [
                self._threshold_per_class(results, rcnn_test_cfg)
                for results in raw
            ]
        elif cfg.get('max_per_class') is not None:
            uncapped = ConfigDict(rcnn_test_cfg)
            uncapped.max_per_img = -1
            results_list = super().predict_bbox(x, batch_img_metas,
                                                rpn_results_list, uncapped,
                                                rescale)
            max_per_class = check_int('test_cfg.rcnn.max_per_class',
                                      cfg['max_per_class'])
            results_list = [
                results[topk_per_class(results.scores, results.labels,
                                       max_per_class)]
                for results in results_list
            ]
        else:
            return super().predict_bbox(x, batch_img_metas, rpn_results_list,
                                        rcnn_test_cfg, rescale)
        return [
            self._cap_image(results, cfg.get('max_per_img', -1))
            for results in results_list
        ]

    @staticmethod
    def _standard_setting(cfg: ConfigDict) -> ConfigDict:
        """MMDetection's test config from the standard keys of ``cfg``."""
        if cfg.get('standard_score_thr') is None:
            raise ValueError(
                'set_standard_only(True) needs test_cfg.rcnn.'
                'standard_score_thr (and standard_max_per_img): the score '
                'floor and cap of the standard AP, 1e-4 and 300 on LVIS')
        standard = ConfigDict(cfg)
        standard.update(
            score_thr=cfg['standard_score_thr'],
            max_per_img=cfg.get('standard_max_per_img', 300),
            dets_per_class=None,
            max_per_class=None)
        return standard

    @staticmethod
    def _cap_image(results: InstanceData, max_per_img: int) -> InstanceData:
        """The ``max_per_img`` best detections (all when it is -1), in the
        input order."""
        if max_per_img is None or max_per_img < 0 or \
                len(results) <= max_per_img:
            return results
        best = torch.sort(
            results.scores, descending=True,
            stable=True).indices[:max_per_img]
        return results[torch.sort(best).values]

    def _class_thresholds(self, num_classes: int, k: int,
                          like: Tensor) -> Tensor:
        """``(C,)`` each class's K-th best score of the pass so far
        (``-inf`` until it has K)."""
        if self._best_scores is None or \
                self._best_scores.shape != (num_classes, k):
            self._best_scores = like.new_full((num_classes, k),
                                              -float('inf'))
        return self._best_scores[:, -1]

    def _threshold_per_class(self, raw: InstanceData,
                             cfg: ConfigDict) -> InstanceData:
        """NMS on the scores above their class's running threshold (and,
        for the standard AP, above ``standard_score_thr``), then the image's
        K best per class; updates the thresholds.

        Args:
            raw (InstanceData): One image's ``bboxes`` ``(N, 4C or 4)`` and
                ``scores`` ``(N, C + 1)`` before NMS.
            cfg (ConfigDict): The ``rcnn`` test config.
        """
        k = check_int('test_cfg.rcnn.dets_per_class', cfg['dets_per_class'])
        floor = check_number('test_cfg.rcnn.score_thr', cfg['score_thr'],
                             minimum=0)
        num_classes = self.bbox_head.num_classes
        scores = raw.scores
        thresholds = self._class_thresholds(num_classes, k, scores)
        objects = scores[:, :num_classes]
        candidate = objects > thresholds
        standard_thr = cfg.get('standard_score_thr')
        if standard_thr is not None:
            candidate |= objects > standard_thr
        # below every bar -> 0, which the floor (>= 0, strict) removes; a
        # box under its class's bar can only suppress boxes under it too,
        # so the NMS of the others is unchanged
        scores = torch.cat([objects * candidate, scores[:, num_classes:]], 1)
        boxes, labels = multiclass_nms(raw.bboxes, scores, floor, cfg.nms,
                                       -1)
        results = InstanceData(
            bboxes=boxes[:, :-1], scores=boxes[:, -1], labels=labels)
        fixed = results.scores > thresholds[labels]
        keep = torch.zeros_like(fixed)
        fixed_index = fixed.nonzero().reshape(-1)  # test time: syncs are fine
        fixed_index = fixed_index[topk_per_class(results.scores[fixed_index],
                                                 labels[fixed_index], k)]
        keep[fixed_index] = True
        if standard_thr is not None:
            # NMS output is sorted by score: the image's best first
            standard = (results.scores > standard_thr).nonzero().reshape(-1)
            keep[standard[:cfg.get('standard_max_per_img', 300)]] = True
        self._best_scores = merge_best_scores(
            self._best_scores, results.scores[fixed_index],
            labels[fixed_index])
        return results[keep]

    def predict_mask(self,
                     x: Tuple[Tensor],
                     batch_img_metas: List[dict],
                     results_list: list,
                     rescale: bool = False) -> list:
        """:meth:`StandardRoIHead.predict_mask`, or with ``mask_chunk`` in
        the test config the mask head on at most ``mask_chunk`` detections
        at a time, masks RLE-encoded as they come. An ``FCNMaskHead``'s masks
        are pasted and encoded in each box's window
        (:func:`~mmlt.integrations.mmdet.mask_rle.paste_and_encode_masks`:
        the same RLEs as pasting into the whole image, in O(box area))."""
        chunk = (self.test_cfg or {}).get('mask_chunk')
        if chunk is None:
            return super().predict_mask(x, batch_img_metas, results_list,
                                        rescale)
        chunk = check_int('test_cfg.rcnn.mask_chunk', chunk)
        # FCNMaskHead's paste, in each detection's window only (same RLEs;
        # at a threshold <= 0 the whole image is in every mask)
        windowed = type(self.mask_head)._predict_by_feat_single is \
            FCNMaskHead._predict_by_feat_single and \
            self.test_cfg.mask_thr_binary > 0
        for index, (results, meta) in enumerate(
                zip(results_list, batch_img_metas)):
            rles, boxes = [], results.bboxes.clone()
            for start in range(0, len(results), chunk):
                part = InstanceData(
                    bboxes=results.bboxes[start:start + chunk].clone(),
                    labels=results.labels[start:start + chunk])
                rois = bbox2roi([part.bboxes])
                rois[:, 0] = index
                mask_preds = self._mask_forward(x, rois)['mask_preds']
                if windowed:
                    part_boxes, part_rles = paste_and_encode_masks(
                        mask_preds, part.bboxes, part.labels, meta,
                        self.test_cfg.mask_thr_binary, rescale,
                        self.mask_head.class_agnostic)
                else:
                    part = self.mask_head.predict_by_feat(
                        (mask_preds, ), [part], [meta], self.test_cfg,
                        rescale)[0]
                    part_boxes = part.bboxes  # rescaled there
                    part_rles = encode_mask_results(part.masks.cpu().numpy())
                rles.extend(part_rles)
                boxes[start:start + chunk] = part_boxes
            results.bboxes = boxes
            results.masks = rles
        return results_list


__all__ = ['PerClassTopKRoIHead', 'topk_per_class']
