# ImageNet-1k for PCL pre-training (labels unused), 8 GPUs x 32 images.
# - train_dataloader: two MoCo v2 views per image (PCL v2's "aug-plus");
# - cluster_dataloader: the training images in dataset order with the
#   paper's center crop (resize 256, crop 224), for PrototypeClusteringHook;
# - knn_*_dataloader: labelled train / val features for
#   tools/analysis_tools/knn_eval.py.
dataset_type = 'ImageNet'
data_root = 'data/imagenet/'

data_preprocessor = dict(
    type='SelfSupDataPreprocessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    to_rgb=True)

view_pipeline = [
    dict(
        type='RandomResizedCrop',
        scale=224,
        crop_ratio_range=(0.2, 1.),
        backend='pillow'),
    dict(
        type='RandomApply',
        # torchvision's jitter: MMPretrain's ColorJitter crashes on negative
        # hue shifts with numpy 2 (mmcv 2.1), as the DDP matrix found.
        transforms=[
            dict(
                type='mmlt.ColorJitter',
                brightness=0.4,
                contrast=0.4,
                saturation=0.4,
                hue=0.1)
        ],
        prob=0.8),
    dict(
        type='RandomGrayscale',
        prob=0.2,
        keep_channels=True,
        channel_weights=(0.114, 0.587, 0.2989)),
    dict(
        type='GaussianBlur',
        magnitude_range=(0.1, 2.0),
        magnitude_std='inf',
        prob=0.5),
    dict(type='RandomFlip', prob=0.5),
]
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='MultiView', num_views=2, transforms=[view_pipeline]),
    dict(type='PackInputs'),
]
center_crop_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=256, edge='short', backend='pillow'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]

train_dataset = dict(type=dataset_type, data_root=data_root, split='train')

train_dataloader = dict(
    batch_size=32,
    num_workers=8,
    drop_last=True,
    persistent_workers=True,
    pin_memory=True,
    sampler=dict(type='mmlt.ResumableSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    # MMPretrain's ImageNet, with per-sample seeds for mmlt.ExactResumeHook.
    dataset=dict(
        type='mmlt.SeededDataset',
        dataset=dict(train_dataset, pipeline=train_pipeline)))

# The paper's code embeds the training set with 5x the training batch.
cluster_dataloader = dict(
    batch_size=160,
    num_workers=8,
    collate_fn=dict(type='default_collate'),
    dataset=dict(train_dataset, pipeline=center_crop_pipeline))

knn_train_dataloader = dict(
    batch_size=160,
    num_workers=8,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(train_dataset, pipeline=center_crop_pipeline))
knn_test_dataloader = dict(
    batch_size=160,
    num_workers=8,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        split='val',
        pipeline=center_crop_pipeline))
