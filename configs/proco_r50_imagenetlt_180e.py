# ProCo (Du et al., TPAMI 2024) on ImageNet-LT, ResNet-50, 180 epochs: the
# recipe of proco_r50_imagenetlt.py with a cosine schedule twice as long.
# Paper: 57.8 top-1.
_base_ = ['./proco_r50_imagenetlt.py']

max_epochs = 180
param_scheduler = [
    dict(
        type='CosineAnnealingLR',
        T_max=max_epochs,
        eta_min=0.,
        by_epoch=True,
        begin=0,
        end=max_epochs),
]
train_cfg = dict(max_epochs=max_epochs)
