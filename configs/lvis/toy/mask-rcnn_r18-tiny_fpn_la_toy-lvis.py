# The toy LVIS detector with a logit-adjusted RoI classifier and no
# contrastive branch: the reference for the ProCo variant next to it. The
# prior is the class frequency of the repeat-factor-sampled stream
# (mmlt.ClassCountsHook(prior='stream')), as in the LVIS v1 configs.
_base_ = './mask-rcnn_r18-tiny_fpn_toy-lvis.py'

model = dict(
    roi_head=dict(
        bbox_head=dict(
            loss_cls=dict(
                _delete_=True, type='mmlt.DetLogitAdjustLoss', tau=1.0))))

custom_hooks = [
    dict(type='mmlt.ClassCountsHook', prior='stream'),
    dict(type='mmlt.ExactResumeHook'),
    dict(type='mmlt.CheckpointCheckHook')
]
