# Mask R-CNN R50-FPN on LVIS v1 + BCL (Zhu et al., CVPR 2022) on the
# foreground RoIs: balanced contrastive loss with the class prototypes
# normalize(MLP(W_c)) made from the object rows of the RoI classifier
# (class-complement) and class-averaged denominators; logit-adjusted
# classifier. Features are gathered from all GPUs.
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
            loss_cls=dict(
                _delete_=True, type='mmlt.DetLogitAdjustLoss', tau=1.0),
            contrast_loss=dict(type='mmlt.BCLLoss', temperature=0.1,
                               loss_weight=0.5))))
