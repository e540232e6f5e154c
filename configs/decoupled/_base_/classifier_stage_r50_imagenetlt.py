# The classifier stage of decoupled training (Kang et al., ICLR 2020) on
# ImageNet-LT: the ResNet-50 of the joint run (ce-linear_r50_imagenetlt.py),
# frozen (frozen_stages=4: the stem and all four stages; norm_eval: BatchNorm
# statistics fixed), its weights loaded by MMEngine's Pretrained init from
# `stage1_checkpoint` (keys under 'backbone.'); mmlt.DecoupledClsHead on the
# pooled 2048-d feature. Class-balanced sampling with 4 images per class
# draw (mmlt.ClassAwareSampler, num_samples_cls=4) and Kang et al.'s
# classifier schedule (classifier_schedule_10e.py: lr 0.1 at batch 256, their
# 0.2 at 512). Validated on ImageNet-LT's own validation list (20 images per
# class) every 5 epochs, tested on the 50,000 test images.
# An MMPretrain ImageNet checkpoint works the same way (its keys are
# 'backbone.*' and 'head.fc.*'): --cfg-options
#   model.backbone.init_cfg.checkpoint=URL_OR_PATH
# The leaf configs set `stage1_checkpoint` and the head's mode.
_base_ = [
    '../../_base_/models/contrastive_r50.py',
    '../../_base_/datasets/imagenetlt_single_view.py',
    '../../_base_/gpu_runtime.py',
    './classifier_schedule_10e.py',
]

model = dict(
    backbone=dict(
        frozen_stages=4,
        norm_eval=True,
        init_cfg=dict(type='Pretrained', checkpoint=None,
                      prefix='backbone.')),
    head=dict(
        _delete_=True,
        type='mmlt.DecoupledClsHead',
        num_classes=1000,
        in_channels=2048,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0)))

train_dataloader = dict(
    sampler=dict(
        _delete_=True, type='mmlt.ClassAwareSampler', num_samples_cls=4))
train_cfg = dict(val_interval=5)
auto_scale_lr = dict(base_batch_size=256)
default_hooks = dict(checkpoint=dict(interval=5, max_keep_ckpts=1))
custom_hooks = [
    dict(type='mmlt.ClassCountsHook', prior='stream'),
    dict(type='mmlt.ExactResumeHook'),
    dict(type='mmlt.CheckpointCheckHook'),
]
