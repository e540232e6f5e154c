# CIFAR-100-LT, imbalance factor 100 (10,847 training images; the LDAM-DRW
# selection), tested on the balanced 10,000 test images; three views per
# training image (classifier view + two contrastive views), batch 256 on one
# GPU. Other imbalance factors: --cfg-options with imb_factor=50 or 10 in
# train_dataloader.dataset and val_evaluator.train_dataset.
_base_ = ['./cifar_lt_pipelines.py']

dataset_type = 'mmlt.CIFAR100LT'
data_root = 'data/cifar100'
num_classes = 100
train_dataset = dict(
    type=dataset_type,
    data_root=data_root,
    split='train',
    imb_factor=100,
    imb_type='exp')

train_dataloader = dict(
    batch_size=256,
    num_workers=8,
    persistent_workers=True,
    pin_memory=True,
    drop_last=True,
    sampler=dict(type='mmlt.ResumableSampler', shuffle=True),
    dataset=dict(train_dataset, pipeline=_base_.multi_view_train_pipeline),
)
val_dataloader = dict(
    batch_size=256,
    num_workers=4,
    persistent_workers=True,
    pin_memory=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        split='test',
        pipeline=_base_.test_pipeline),
)
val_evaluator = dict(type='mmlt.LongTailAccuracy', train_dataset=train_dataset)
test_dataloader = val_dataloader
test_evaluator = val_evaluator
