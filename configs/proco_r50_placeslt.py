# ProCo (Du et al., TPAMI 2024) on Places-LT: an UNTUNED starting point.
# Neither ProCo nor BCL reports Places-LT, so there are no reference
# hyper-parameters. Places-LT is usually trained from an ImageNet-pretrained
# backbone (the protocol of Liu et al., CVPR 2019); this config starts from
# MMPretrain's ImageNet-1k ResNet-50 and keeps ProCo's ImageNet-LT head, loss
# and augmentation, fine-tuning for 30 epochs at lr 0.01 (both guesses).
_base_ = [
    '_base_/models/contrastive_r50.py',
    '_base_/datasets/placeslt.py',
    '_base_/schedules/imagenet_lt_sgd_cos_90e.py',
    '_base_/gpu_runtime.py',
]

model = dict(
    backbone=dict(
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://download.openmmlab.com/mmclassification/v0/'
            'resnet/resnet50_8xb32_in1k_20210831-ea4938fc.pth',
            prefix='backbone')),
    head=dict(
        num_classes=365,
        loss=dict(type='mmlt.LogitAdjustLoss', tau=1.0),
        contrast_loss=dict(type='mmlt.ProCoLoss', temperature=0.07,
                           loss_weight=1.0)))
max_epochs = 30
optim_wrapper = dict(optimizer=dict(lr=0.01))
param_scheduler = [
    dict(
        type='CosineAnnealingLR',
        T_max=max_epochs,
        eta_min=0.,
        by_epoch=True,
        begin=0,
        end=max_epochs),
]
train_cfg = dict(max_epochs=max_epochs, val_interval=5)
