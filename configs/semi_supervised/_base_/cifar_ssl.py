# Long-tailed semi-supervised CIFAR (GPU settings of DARP / DASO / ACR after
# FixMatch, Sohn et al., NeurIPS 2020): WRN-28-2, batches of 64 labeled +
# 128 unlabeled images (mu = 2) on one GPU, SGD (lr 0.03, momentum 0.9,
# Nesterov, weight decay 5e-4), 250k iterations as 500 "epochs" of 500
# iterations, threshold 0.95, lambda_u 1, evaluation of the EMA model
# (momentum 0.999). Weak view: crop with 4-pixel padding + flip; strong view:
# weak + RandAugment (2 operations) + Cutout 16x16. FixMatch decays the
# learning rate as cos(7 pi k / 16 K) (ending at 0.2 lr); MMEngine has no
# such scheduler, so this is cosine decay to 0. The dataset configs next to
# this file set the splits (docs/semi_supervised.md).
_base_ = [
    '../../_base_/datasets/cifar_lt_pipelines.py',
    '../../_base_/datasets/timm_randaugment.py',
    '../../_base_/gpu_runtime.py',
]

weak_view = [
    dict(type='RandomCrop', crop_size=32, padding=4, padding_mode='reflect'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
]
strong_view = weak_view + [
    dict(
        type='RandAugment',
        policies=_base_.timm_randaugment_policies,
        num_policies=2,
        magnitude_level=10,
        magnitude_std=0.5,
        total_level=10),
    dict(type='Cutout', shape=16, prob=1.0),
]
ssl_train_pipeline = [
    dict(type='MultiView', num_views=[1, 1],
         transforms=[weak_view, strong_view]),
    dict(type='PackInputs', algorithm_keys=('true_label', )),
]
labeled_batch, mu = 64, 2
epoch_length = 500
max_epochs = 500

model = dict(
    type='ImageClassifier',
    data_preprocessor=_base_.data_preprocessor,
    backbone=dict(type='mmlt.WideResNet', depth=28, widen_factor=2),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='mmlt.FixMatchClsHead',
        num_classes=10,
        in_channels=128,
        proj_dims=(512, 128),
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        threshold=0.95,
        unlabeled_weight=1.0))

optim_wrapper = dict(
    type='mmlt.SkipNonFiniteOptimWrapper',
    optimizer=dict(
        type='SGD', lr=0.03, momentum=0.9, weight_decay=5e-4, nesterov=True))
param_scheduler = [
    dict(
        type='CosineAnnealingLR',
        T_max=max_epochs,
        by_epoch=True,
        convert_to_iter_based=True)
]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=10)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(base_batch_size=labeled_batch * (1 + mu))

default_hooks = dict(
    logger=dict(interval=100),
    checkpoint=dict(type='CheckpointHook', interval=10, max_keep_ckpts=2))
custom_hooks = [
    dict(type='mmlt.ClassCountsHook'),
    dict(type='mmlt.VMFWindowHook'),
    dict(type='mmlt.SemiSupervisedHook'),
    dict(type='EMAHook', momentum=0.001, priority='ABOVE_NORMAL'),
    dict(type='mmlt.ExactResumeHook'),
    dict(type='mmlt.CheckpointCheckHook'),
]
