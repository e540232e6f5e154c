# The toy LVIS detector with the Seesaw classifier of
# mask-rcnn_r18-tiny_fpn_seesaw_toy-lvis.py plus ProCo on the foreground RoIs
# as in mask-rcnn_r18-tiny_fpn_proco_toy-lvis.py (the toy counterpart of
# configs/lvis/mask-rcnn_r50_fpn_seesaw-proco_sample1e-3_ms-1x_lvis-v1.py).
_base_ = './mask-rcnn_r18-tiny_fpn_proco_toy-lvis.py'

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
