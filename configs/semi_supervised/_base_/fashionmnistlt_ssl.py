# Long-tailed semi-supervised Fashion-MNIST-LT on the CPU (docs/semi_supervised.md).
# Labeled: the demo's Fashion-MNIST-LT (n_max 1000, IF 100: 2,478 images).
# Unlabeled: drawn from the 57,522 training images the labeled split leaves
# out, M1 = 2000 in the largest class, IF 100, consistent profile (the same
# class order; *_reversed.py / *_uniform.py change it): 4,958 images, labels
# kept aside for reporting only. Batches of 64 labeled + 128 unlabeled
# (mu = 2) images, each with a weak view (the demo's classifier view: crop
# with 3-pixel padding, flip) and a strong one (weak + FixMatch's RandAugment
# + Cutout, FixMatch's strong augmentation; the Fashion results in
# docs/semi_supervised.md were made with timm's RandAugment at level 10 and
# without the EMA model). An epoch is one pass over the labeled split (38
# iterations); 20 epochs as in the supervised demo. The head is FixMatch's
# (threshold 0.95, lambda_u 1) with a cross-entropy labeled loss; the method
# configs next to this file change it. The EMA model is the one evaluated
# (momentum 0.01, see custom_hooks).
_base_ = [
    '../../_base_/datasets/fashionmnistlt.py',
    '../../_base_/schedules/fashionmnistlt_cpu.py',
    '../../_base_/default_runtime.py',
]

labeled_dataset = _base_.train_dataset
unlabeled_dataset = dict(
    labeled_dataset,
    unlabeled=dict(n_max=2000, imb_factor=100, profile='consistent'))

weak_view = _base_.cls_view
strong_view = weak_view + [
    # gray images repeated into 3 channels
    dict(type='mmlt.RandAugmentMC', num_ops=2, magnitude=10,
         channel_order='rgb'),
    dict(type='Cutout', shape=14, prob=1.0),
]
ssl_train_pipeline = [
    dict(type='MultiView', num_views=[1, 1],
         transforms=[weak_view, strong_view]),
    # true_label: the unlabeled images' kept-aside label, for the logged
    # pseudo-label accuracy only
    dict(type='PackInputs', algorithm_keys=('true_label', )),
]

labeled_batch, mu = 64, 2
train_dataloader = dict(
    _delete_=True,
    batch_size=labeled_batch * (1 + mu),
    num_workers=1,
    persistent_workers=True,
    sampler=dict(
        type='mmlt.MultiSourceSampler',
        batch_size=labeled_batch * (1 + mu),
        source_ratio=[1, mu]),
    dataset=dict(
        type='mmlt.SemiSupervisedDataset',
        labeled=dict(labeled_dataset, pipeline=ssl_train_pipeline),
        unlabeled=dict(unlabeled_dataset, pipeline=ssl_train_pipeline)))

model = dict(
    type='ImageClassifier',
    data_preprocessor={{_base_.data_preprocessor}},
    backbone=dict(type='mmlt.CifarResNet', depth=20),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='mmlt.FixMatchClsHead',
        num_classes=10,
        in_channels=64,
        proj_dims=(512, 128),
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        threshold=0.95,
        unlabeled_weight=1.0))

# the labeled batch, as in the supervised configs (64 labeled images)
auto_scale_lr = dict(base_batch_size=labeled_batch * (1 + mu))
default_hooks = dict(logger=dict(interval=13))
custom_hooks = [
    dict(type='mmlt.ClassCountsHook'),
    dict(type='mmlt.VMFWindowHook'),
    dict(type='mmlt.SemiSupervisedHook'),
    # The averaged model is the one evaluated. MMEngine's momentum is
    # 1 - decay: the CIFAR configs' 0.001 (decay 0.999) over these 760
    # iterations would leave 0.999^760 = 0.47 of the weight on the initial
    # model; 0.01 (decay 0.99) averages about the last 100 iterations and
    # leaves 0.99^760 = 5e-4 on the start.
    dict(type='EMAHook', momentum=0.01, priority='ABOVE_NORMAL'),
    dict(type='mmlt.ExactResumeHook'),
    dict(type='mmlt.CheckpointCheckHook'),
]
