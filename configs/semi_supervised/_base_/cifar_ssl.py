# Long-tailed semi-supervised CIFAR (GPU settings of DARP / DASO / ACR after
# FixMatch, Sohn et al., NeurIPS 2020): WRN-28-2, batches of 64 labeled +
# 128 unlabeled images (mu = 2) on one GPU, SGD (lr 0.03, momentum 0.9,
# Nesterov, weight decay 5e-4 on the convolution and linear weights, none on
# BatchNorm and biases, as FixMatch), 250k iterations as 500 "epochs" of 500
# iterations, threshold 0.95, lambda_u 1. Learning rate: FixMatch's
# cos(7 pi k / 16 K) (schedules/fixmatch_cosine.py; FixMatch, ACR);
# `param_scheduler = _base_.daso_constant` in a config switches to DASO's
# constant rate (schedules/daso_constant.py). Weak view: crop with 4-pixel
# padding + flip; strong view: weak + FixMatch's RandAugment (2 of its 14
# operations, each with probability 0.5 at a magnitude drawn uniformly from
# 1..10) + Cutout 16x16. The EMA model (momentum 0.999) is evaluated every
# "epoch" (500 iterations); the protocols report the median (DASO) or mean
# (ACR) of the last 20 evaluations: tools/analysis_tools/seed_study.py
# --last-k 20. The dataset configs next to this file set the splits
# (docs/semi_supervised.md).
_base_ = [
    '../../_base_/datasets/cifar_lt_pipelines.py',
    '../../_base_/gpu_runtime.py',
    './schedules/fixmatch_cosine.py',
    './schedules/daso_constant.py',
]

weak_view = [
    dict(type='RandomCrop', crop_size=32, padding=4, padding_mode='reflect'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
]
strong_view = weak_view + [
    # mmlt's CIFAR arrays are RGB
    dict(type='mmlt.RandAugmentMC', num_ops=2, magnitude=10,
         channel_order='rgb'),
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
        type='SGD', lr=0.03, momentum=0.9, weight_decay=5e-4, nesterov=True),
    # no weight decay on BatchNorm weights and biases, nor on any bias
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0))
param_scheduler = _base_.fixmatch_cosine
# every 500 iterations, as DASO and ACR: the last 20 evaluations give the
# reported median / mean
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=1)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(base_batch_size=labeled_batch * (1 + mu))

default_hooks = dict(
    logger=dict(interval=100),
    # every 5000 iterations; evaluations do not need a checkpoint each
    checkpoint=dict(type='CheckpointHook', interval=10, max_keep_ckpts=2))
custom_hooks = [
    dict(type='mmlt.ClassCountsHook'),
    dict(type='mmlt.VMFWindowHook'),
    dict(type='mmlt.SemiSupervisedHook'),
    dict(type='EMAHook', momentum=0.001, priority='ABOVE_NORMAL'),
    dict(type='mmlt.ExactResumeHook'),
    dict(type='mmlt.CheckpointCheckHook'),
]
