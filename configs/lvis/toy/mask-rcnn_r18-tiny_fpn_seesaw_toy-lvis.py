# The toy LVIS detector with the Seesaw loss (Wang et al., CVPR 2021) and the
# normalised linear classifier of MMDetection's Seesaw configs, as
# configs/lvis/mask-rcnn_r50_fpn_seesaw_sample1e-3_ms-1x_lvis-v1.py. Seesaw
# keeps its own running class counts, so no class prior is needed.
_base_ = './mask-rcnn_r18-tiny_fpn_toy-lvis.py'

model = dict(
    roi_head=dict(
        bbox_head=dict(
            cls_predictor_cfg=dict(type='NormedLinear', tempearture=20),
            loss_cls=dict(
                _delete_=True,
                type='SeesawLoss',
                p=0.8,
                q=2.0,
                num_classes={{_base_.num_classes}},
                loss_weight=1.0))))
