# The classifier stage of decoupled training (Kang et al., "Decoupling
# Representation and Classifier for Long-Tailed Recognition", ICLR 2020) on
# Fashion-MNIST-LT (n_max 1000, IF 100): the CIFAR ResNet-20 of the joint
# cross-entropy run (configs/ce_fashionmnistlt.py), frozen (frozen_stages=3
# and norm_eval: no weight and no BatchNorm statistic changes), its weights
# loaded by MMEngine's Pretrained init from `stage1_checkpoint` (keys under
# 'backbone.'); mmlt.DecoupledClsHead on the pooled feature. Trained with
# class-balanced sampling (mmlt.ClassAwareSampler: each class equally likely)
# on the classifier view, with Kang et al.'s classifier schedule
# (classifier_schedule_10e.py) at batch 64. Validated on the validation split
# (100 held-out training images per class, disjoint from the long-tailed
# subset and the test set) after every epoch, tested on the balanced test set
# by tools/test.py.
# The leaf configs set `stage1_checkpoint` and the head's mode.
_base_ = [
    '../../_base_/datasets/fashionmnistlt.py',
    '../../_base_/default_runtime.py',
    './classifier_schedule_10e.py',
]

model = dict(
    type='ImageClassifier',
    data_preprocessor={{_base_.data_preprocessor}},
    backbone=dict(
        type='mmlt.CifarResNet',
        depth=20,
        frozen_stages=3,
        norm_eval=True,
        init_cfg=dict(type='Pretrained', checkpoint=None,
                      prefix='backbone.')),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='mmlt.DecoupledClsHead',
        num_classes=10,
        in_channels=64,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0)))

train_dataloader = dict(
    sampler=dict(_delete_=True, type='mmlt.ClassAwareSampler'),
    dataset=dict(pipeline=_base_.cls_view + [dict(type='PackInputs')]))
val_dataloader = dict(
    dataset=dict(split='val', n_val_per_class=100, **_base_.lt_args))
auto_scale_lr = dict(base_batch_size=64)
default_hooks = dict(
    logger=dict(interval=13),
    checkpoint=dict(interval=_base_.classifier_epochs, max_keep_ckpts=1))
# The classifier is trained on the class-balanced stream: a loss that reads
# the class prior gets that stream's (near-uniform) one.
custom_hooks = [
    dict(type='mmlt.ClassCountsHook', prior='stream'),
    dict(type='mmlt.ExactResumeHook'),
    dict(type='mmlt.CheckpointCheckHook'),
]
