# Fashion-MNIST-LT: the exponential profile over the 10 Fashion-MNIST classes
# (n_max 1000, imbalance factor 100: 1000 ... 10 images, 2,478 in all), from
# Debian's dataset-fashion-mnist IDX files; tested on the balanced 10,000.
dataset_type = 'mmlt.FashionMNISTLT'
data_root = '/usr/share/datasets/fashion-mnist'

lt_args = dict(n_max=1000, imb_factor=100, imb_type='exp', seed=0)

train_dataset = dict(
    type=dataset_type, data_root=data_root, split='train', **lt_args)

data_preprocessor = dict(
    type='mmlt.MultiViewDataPreprocessor',
    num_classes=10,
    mean=[72.94, 72.94, 72.94],
    std=[90.0, 90.0, 90.0],
    to_rgb=False,
    # NHWC batches: about 20% faster convolutions on the CPU (oneDNN)
    channels_last=True)
# ... and NHWC parameters under DDP, so gradients need no copy into buckets
model_wrapper_cfg = dict(type='mmlt.ChannelsLastDistributedDataParallel')

# view 1: the classifier's view
cls_view = [
    dict(type='RandomCrop', crop_size=28, padding=3),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
]
# views 2 and 3: contrastive (SimCLR-style, mild for 28x28 grayscale)
contrast_view = [
    dict(type='RandomResizedCrop', scale=28, crop_ratio_range=(0.4, 1.0)),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(
        type='RandomApply',
        transforms=[dict(type='ColorJitter', brightness=0.4, contrast=0.4)],
        prob=0.8),
]
train_pipeline = [
    dict(
        type='MultiView',
        num_views=[1, 2],
        transforms=[cls_view, contrast_view]),
    dict(type='PackInputs'),
]
test_pipeline = [dict(type='PackInputs')]

train_dataloader = dict(
    batch_size=64,
    num_workers=1,
    persistent_workers=True,
    sampler=dict(type='mmlt.ResumableSampler', shuffle=True),
    dataset=dict(train_dataset, pipeline=train_pipeline),
)
val_dataloader = dict(
    batch_size=500,
    num_workers=1,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        split='test',
        pipeline=test_pipeline),
)
val_evaluator = dict(
    type='mmlt.LongTailAccuracy', train_dataset=train_dataset)
test_dataloader = val_dataloader
test_evaluator = val_evaluator
