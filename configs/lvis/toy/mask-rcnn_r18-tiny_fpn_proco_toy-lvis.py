# The toy LVIS detector with ProCo on the foreground RoIs (Du et al., TPAMI
# 2024): logit-adjusted RoI classifier + ProCo loss on the 2-fc features
# through a 256-256-64 projection. The class prior is the instance count per
# category of the annotation file (mmlt.ClassCountsHook), the vMF window is an
# epoch (mmlt.VMFWindowHook).
_base_ = './mask-rcnn_r18-tiny_fpn_toy-lvis.py'

model = dict(
    roi_head=dict(
        type='mmlt.ContrastiveRoIHead',
        bbox_head=dict(
            type='mmlt.ContrastiveBBoxHead',
            proj_dims=(256, 64),
            loss_cls=dict(
                _delete_=True, type='mmlt.DetLogitAdjustLoss', tau=1.0),
            contrast_loss=dict(type='mmlt.ProCoLoss', temperature=0.1,
                               loss_weight=0.5))))

custom_hooks = [
    dict(type='mmlt.ClassCountsHook'),
    dict(type='mmlt.VMFWindowHook'),
    dict(type='mmlt.ExactResumeHook'),
    dict(type='mmlt.CheckpointCheckHook'),
]
