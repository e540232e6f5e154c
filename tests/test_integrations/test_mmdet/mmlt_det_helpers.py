"""Small RoI heads, features and sampling results for the mmdet tests."""
import copy

import torch
from mmengine.config import ConfigDict
from mmengine.structures import InstanceData

NUM_CLASSES = 5
IMAGE_SIZE = 64
STRIDES = (4, 8, 16, 32)
CHANNELS = 8

RCNN_TRAIN_CFG = ConfigDict(
    assigner=dict(
        type='MaxIoUAssigner',
        pos_iou_thr=0.5,
        neg_iou_thr=0.5,
        min_pos_iou=0.5,
        match_low_quality=False,
        ignore_iof_thr=-1),
    sampler=dict(
        type='RandomSampler',
        num=32,
        pos_fraction=0.5,
        neg_pos_ub=-1,
        add_gt_as_proposals=False),
    pos_weight=-1,
    debug=False)
RCNN_TEST_CFG = ConfigDict(
    score_thr=0.0,
    nms=dict(type='nms', iou_threshold=0.5),
    max_per_img=20)


def bbox_head_cfg(contrast_loss='mmlt.ProCoLoss', **kwargs):
    cfg = dict(
        type='mmlt.ContrastiveBBoxHead',
        in_channels=CHANNELS,
        fc_out_channels=32,
        roi_feat_size=7,
        num_classes=NUM_CLASSES,
        proj_dims=(32, 16),
        contrast_loss=None if contrast_loss is None else dict(
            type=contrast_loss, temperature=0.1, loss_weight=0.5))
    cfg.update(kwargs)
    return cfg


def roi_head_cfg(bbox_head=None, roi_head_type='mmlt.ContrastiveRoIHead'):
    return dict(
        type=roi_head_type,
        bbox_roi_extractor=dict(
            type='SingleRoIExtractor',
            roi_layer=dict(type='RoIAlign', output_size=7, sampling_ratio=0),
            out_channels=CHANNELS,
            featmap_strides=list(STRIDES)),
        bbox_head=bbox_head if bbox_head is not None else bbox_head_cfg(),
        train_cfg=copy.deepcopy(RCNN_TRAIN_CFG),
        test_cfg=copy.deepcopy(RCNN_TEST_CFG))


def build_roi_head(cfg):
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    register_all_modules(init_default_scope=True)
    head = MODELS.build(cfg)
    head.init_weights()
    return head


def features(batch_size=2, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return tuple(
        torch.randn(
            batch_size,
            CHANNELS,
            IMAGE_SIZE // stride,
            IMAGE_SIZE // stride,
            generator=generator) for stride in STRIDES)


def gt_instances(boxes, labels):
    gt = InstanceData()
    gt.bboxes = torch.tensor(boxes, dtype=torch.float32)
    gt.labels = torch.tensor(labels, dtype=torch.long)
    return gt


def sampling_results(roi_head, proposals_per_image, gts_per_image):
    """Assign and sample, as StandardRoIHead.loss does."""
    results = []
    for proposals, gt in zip(proposals_per_image, gts_per_image):
        priors = InstanceData()
        priors.priors = torch.tensor(proposals, dtype=torch.float32)
        assign = roi_head.bbox_assigner.assign(priors, gt)
        results.append(roi_head.bbox_sampler.sample(assign, priors, gt))
    return results


#: Two images: image 0 has objects of class 1 and 3, image 1 of class 3.
GTS = [
    gt_instances([[4., 4., 28., 30.], [34., 30., 60., 60.]], [1, 3]),
    gt_instances([[10., 8., 40., 44.]], [3]),
]
#: Proposals: near-copies of the GT boxes (foreground) and boxes far away
#: from them (background).
PROPOSALS = [
    [[4., 4., 28., 30.], [5., 5., 28., 29.], [34., 31., 60., 60.],
     [40., 2., 62., 20.], [2., 40., 20., 62.], [0., 0., 10., 10.]],
    [[10., 8., 40., 44.], [11., 9., 40., 43.], [48., 48., 63., 63.],
     [44., 0., 63., 16.], [0., 50., 14., 63.]],
]
#: The same images with only background proposals.
BACKGROUND_PROPOSALS = [
    [[40., 2., 62., 20.], [2., 40., 20., 62.]],
    [[48., 48., 63., 63.], [44., 0., 63., 16.]],
]


def proposal_results(proposals_per_image=PROPOSALS):
    """RPN results (InstanceData with ``bboxes``) of the given proposals."""
    results = []
    for boxes in proposals_per_image:
        result = InstanceData()
        result.bboxes = torch.tensor(boxes, dtype=torch.float32)
        results.append(result)
    return results
