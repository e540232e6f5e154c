# Seesaw loss (Wang et al., CVPR 2021) for the RoI classifier, with the
# normalised linear classifier of MMDetection's Seesaw configs, plus ProCo on
# the foreground RoIs. Seesaw keeps its own running class counts; the ProCo
# prior is the sampled stream's (mmlt.ClassCountsHook(prior='stream')).
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
            cls_predictor_cfg=dict(type='NormedLinear', tempearture=20),
            loss_cls=dict(
                _delete_=True,
                type='SeesawLoss',
                p=0.8,
                q=2.0,
                num_classes=1203,
                loss_weight=1.0),
            contrast_loss=dict(
                type='mmlt.ProCoLoss',
                temperature=0.1,
                loss_weight=0.5,
                # rare classes: score against statistics without the current
                # batch, and shrink kappa towards the global concentration
                # with a pseudo-count of 100 RoIs (docs/detection.md)
                score_before_update=True,
                estimator=dict(kappa_shrinkage=100)))))
