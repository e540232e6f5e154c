# iNaturalist 2018 (Van Horn et al., CVPR 2018): 8,142 species, 437,513
# training images; evaluated on the balanced validation split
# (iNaturalist18_val.txt, 24,426 images), which is also the test split. Three
# views per training image, 8 GPUs x 32 images (batch 256). Layout:
# docs/data_preparation.md (data/inat2018, meta/...).
_base_ = ['./lt_imagenet_style_pipelines.py']

# iNaturalist statistics, as in the reference code (RandAugment still fills
# with the ImageNet mean there).
data_preprocessor = dict(
    mean=[118.83, 120.105, 96.9], std=[49.725, 49.47, 48.96])

dataset_type = 'mmlt.INaturalist2018'
data_root = 'data/inat2018'
num_classes = 8142
train_dataset = dict(
    type=dataset_type,
    data_root=data_root,
    ann_file='meta/iNaturalist18_train.txt',
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
        ann_file='meta/iNaturalist18_val.txt',
        data_prefix='',
        pipeline=_base_.test_pipeline),
)
test_dataloader = val_dataloader
# The metric needs only the training class counts: skip the file check.
val_evaluator = dict(
    type='mmlt.LongTailAccuracy',
    train_dataset=dict(train_dataset, check_files=False),
    topk=(1, 5))
test_evaluator = val_evaluator
