# ProCo (Du et al., TPAMI 2024) on Fashion-MNIST-LT, IF 100, on the CPU: the
# README's demo. CIFAR-style ResNet-20, projection 64-512-128, tau 0.1,
# logit-adjusted classifier + ProCo loss (alpha 1) on two contrastive views.
_base_ = [
    '_base_/datasets/fashionmnistlt.py',
    '_base_/schedules/fashionmnistlt_cpu.py',
    '_base_/default_runtime.py',
]

model = dict(
    type='ImageClassifier',
    data_preprocessor={{_base_.data_preprocessor}},
    backbone=dict(type='mmlt.CifarResNet', depth=20),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='mmlt.ContrastiveClsHead',
        num_classes=10,
        in_channels=64,
        proj_dims=(512, 128),
        loss=dict(type='mmlt.LogitAdjustLoss', tau=1.0),
        contrast_loss=dict(type='mmlt.ProCoLoss', temperature=0.1,
                           loss_weight=1.0)),
)

# log progress a few times per epoch (39 iterations) on the CPU demo
default_hooks = dict(logger=dict(interval=13))
