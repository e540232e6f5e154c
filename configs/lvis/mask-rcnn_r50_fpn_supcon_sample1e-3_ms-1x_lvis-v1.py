# Mask R-CNN R50-FPN on LVIS v1 + supervised contrastive loss (Khosla et al.,
# NeurIPS 2020) on the foreground RoIs, features gathered from all GPUs; the
# classifier keeps MMDetection's cross-entropy.
_base_ = './_base_/mask-rcnn_r50_fpn_class-counts_lvis-v1.py'

model = dict(
    roi_head=dict(
        type='mmlt.ContrastiveRoIHead',
        # FSCE-style positives: only RoIs with IoU >= 0.7 feed the
        # contrastive loss (docs/detection.md)
        contrast_iou_thr=0.7,
        bbox_head=dict(
            type='mmlt.ContrastiveBBoxHead',
            proj_dims=(1024, 128),
            contrast_loss=dict(type='mmlt.SupConLoss', temperature=0.1,
                               loss_weight=0.5))))
