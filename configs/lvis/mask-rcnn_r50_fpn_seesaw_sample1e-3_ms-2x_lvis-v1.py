# The 2x schedule of the Seesaw paper and MMDetection's Seesaw reference
# (24 epochs, lr x0.1 at 16 and 22) for mask-rcnn_r50_fpn_seesaw_sample1e-3_ms-1x_lvis-v1.py.
_base_ = './mask-rcnn_r50_fpn_seesaw_sample1e-3_ms-1x_lvis-v1.py'

train_cfg = dict(max_epochs=24, val_interval=24)
param_scheduler = [
    dict(
        type='LinearLR', start_factor=0.001, by_epoch=False, begin=0,
        end=500),
    dict(
        type='MultiStepLR',
        begin=0,
        end=24,
        by_epoch=True,
        milestones=[16, 22],
        gamma=0.1)
]
