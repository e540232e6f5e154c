# Mask R-CNN R50-FPN on LVIS v1 + ProCo (Du et al., TPAMI 2024) on the
# foreground RoIs: the 2-fc RoI features also feed a 1024-1024-128
# projection, whose unit outputs go to the ProCo loss (vMF estimator fed with
# exactly the sampled foreground RoIs, statistics shared by all GPUs). The
# classifier keeps logit adjustment, as in ProCo's recipe. Inference is that
# of the baseline. loss weight 0.5 and temperature 0.1 are not tuned on
# LVIS.
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
            contrast_loss=dict(
                type='mmlt.ProCoLoss',
                temperature=0.1,
                loss_weight=0.5,
                # rare classes: score against statistics without the current
                # batch, and shrink kappa towards the global concentration
                # with a pseudo-count of 100 RoIs (docs/detection.md)
                score_before_update=True,
                estimator=dict(kappa_shrinkage=100),
                # the prior of the RoIs the loss sees (IoU >= 0.7): the
                # estimator's counts, not the stream's instances
                prior='estimator'))))
