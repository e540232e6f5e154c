# Seesaw loss (Wang et al., CVPR 2021) alone: the 1x baseline next to
# seesaw-proco (same schedule, same repeat-factor sampling). The normalised
# linear classifier of MMDetection's Seesaw configs; Seesaw keeps its own
# running class counts, so no class prior is needed. The Seesaw paper and
# MMDetection's reference use 2x: mask-rcnn_r50_fpn_seesaw_sample1e-3_ms-2x_lvis-v1.py.
_base_ = './_base_/mask-rcnn_r50_fpn_class-counts_lvis-v1.py'

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
