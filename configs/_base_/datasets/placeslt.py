# Places-LT (Liu et al., CVPR 2019): 365 classes, 62,500 training images;
# validation on Places_LT_val.txt (7,300), test on Places_LT_test.txt (36,500,
# balanced). Three views per training image, 8 GPUs x 32 images (batch 256).
# Layout: docs/data_preparation.md (data/places365, meta/...).
_base_ = ['./lt_imagenet_style_pipelines.py']

dataset_type = 'mmlt.PlacesLT'
data_root = 'data/places365'
num_classes = 365
train_dataset = dict(
    type=dataset_type,
    data_root=data_root,
    ann_file='meta/Places_LT_train.txt',
    data_prefix='')

train_dataloader = dict(
    batch_size=32,
    num_workers=8,
    persistent_workers=True,
    pin_memory=True,
    drop_last=True,
    sampler=dict(type='mmlt.ResumableSampler', shuffle=True),
    dataset=dict(train_dataset, pipeline=_base_.multi_view_train_pipeline),
)
val_dataloader = dict(
    batch_size=64,
    num_workers=8,
    persistent_workers=True,
    pin_memory=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='meta/Places_LT_val.txt',
        data_prefix='',
        pipeline=_base_.test_pipeline),
)
test_dataloader = dict(
    batch_size=64,
    num_workers=8,
    persistent_workers=True,
    pin_memory=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='meta/Places_LT_test.txt',
        data_prefix='',
        pipeline=_base_.test_pipeline),
)
# The metric needs only the training class counts: skip the file check.
val_evaluator = dict(
    type='mmlt.LongTailAccuracy',
    train_dataset=dict(train_dataset, check_files=False),
    topk=(1, 5))
test_evaluator = val_evaluator
