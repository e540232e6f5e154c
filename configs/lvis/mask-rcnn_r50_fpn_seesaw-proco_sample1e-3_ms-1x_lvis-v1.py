# Seesaw loss (Wang et al., CVPR 2021) for the RoI classifier, with the
# normalised linear classifier of MMDetection's Seesaw configs, plus ProCo on
# the foreground RoIs: mask-rcnn_r50_fpn_proco_sample1e-3_ms-1x_lvis-v1.py
# with the classifier of mask-rcnn_r50_fpn_seesaw_sample1e-3_ms-1x_lvis-v1.py
# (its Seesaw-only baseline). Seesaw keeps its own running class counts; the
# ProCo prior is the sampled stream's (mmlt.ClassCountsHook(prior='stream')).
_base_ = './mask-rcnn_r50_fpn_proco_sample1e-3_ms-1x_lvis-v1.py'

model = dict(
    roi_head=dict(
        bbox_head=dict(
            cls_predictor_cfg=dict(type='NormedLinear', tempearture=20),
            loss_cls=dict(
                _delete_=True,
                type='SeesawLoss',
                p=0.8,
                q=2.0,
                num_classes=1203,
                loss_weight=1.0))))
