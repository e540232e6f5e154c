"""Test-time detections for LVIS AP-fixed: the top k per class per image.

AP-fixed (Dave et al., "Evaluating Large-Vocabulary Object Detectors: The
Devil is in the Details", 2021) ranks each class's detections over the whole
dataset and keeps its best K (10,000 on LVIS); a per-image cap shared by all
classes (LVIS's 300) would make a class's detections depend on the scores of
the other classes in the image. The RoI head therefore keeps, after NMS, the
``max_per_class`` best detections of every class in each image, before the
mask head runs (masks cost memory per detection).
"""
from typing import List, Optional, Tuple

import torch
from mmdet.models.roi_heads import StandardRoIHead
from mmengine.config import ConfigDict
from torch import Tensor

from mmlt.registry import MODELS
from mmlt.utils.validation import check_int
from .per_class_topk import topk_per_class


@MODELS.register_module()
class PerClassTopKRoIHead(StandardRoIHead):
    """:class:`StandardRoIHead` whose test config may cap detections per
    class instead of per image.

    With ``max_per_class`` in ``test_cfg`` (the ``rcnn`` part of the
    detector's ``test_cfg``), NMS runs uncapped, then every class keeps its
    ``max_per_class`` best boxes of the image, and only then ``max_per_img``
    (``-1``: none) caps the total; the mask head sees the kept boxes only.
    Without it the head is exactly :class:`StandardRoIHead`, and it has no
    parameters of its own, so any Mask R-CNN checkpoint loads. The AP-fixed
    setting for LVIS v1 (docs/detection.md)::

        model = dict(
            roi_head=dict(type='mmlt.PerClassTopKRoIHead'),
            test_cfg=dict(rcnn=dict(
                score_thr=0.0001, max_per_img=-1, max_per_class=300)))

    With ``max_per_class >= 300`` the 300 best detections of an image are
    all kept, so the standard LVIS AP (300 per image, applied by
    :class:`mmlt.LVISFixedMetric`) is unchanged.
    """

    def predict_bbox(self,
                     x: Tuple[Tensor],
                     batch_img_metas: List[dict],
                     rpn_results_list: list,
                     rcnn_test_cfg: Optional[ConfigDict],
                     rescale: bool = False) -> list:
        max_per_class = None if rcnn_test_cfg is None else \
            rcnn_test_cfg.get('max_per_class')
        if max_per_class is None:
            return super().predict_bbox(x, batch_img_metas, rpn_results_list,
                                        rcnn_test_cfg, rescale)
        max_per_class = check_int('test_cfg.rcnn.max_per_class',
                                  max_per_class)
        uncapped = ConfigDict(rcnn_test_cfg)
        uncapped.max_per_img = -1
        results_list = super().predict_bbox(x, batch_img_metas,
                                            rpn_results_list, uncapped,
                                            rescale)
        max_per_img = rcnn_test_cfg.get('max_per_img', -1)
        capped = []
        for results in results_list:
            keep = topk_per_class(results.scores, results.labels,
                                  max_per_class)
            if max_per_img > 0 and len(keep) > max_per_img:
                # keep is in the input order: scores descending after NMS
                best = torch.sort(
                    results.scores[keep], descending=True,
                    stable=True).indices[:max_per_img]
                keep = torch.sort(keep[best]).values
            capped.append(results[keep])
        return capped


__all__ = ['PerClassTopKRoIHead', 'topk_per_class']
