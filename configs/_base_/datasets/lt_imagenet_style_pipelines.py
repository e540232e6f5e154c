# Pipelines shared by ImageNet-LT, Places-LT and iNaturalist 2018 (images
# loaded from files, BGR), as in the ProCo (Du et al., TPAMI 2024) and BCL
# (Zhu et al., CVPR 2022) code ("sim-sim" views):
# - view 1, the classifier's: random resized crop 224 (scale 0.08-1), flip,
#   colour jitter (0.4, 0.4, 0.4) always, RandAugment rand-n2-m10-mstd0.5;
# - views 2 and 3, contrastive (SimCLR-style, no blur): random resized crop
#   224, flip, colour jitter (0.4, 0.4, 0.4, 0.1) with p 0.8, grayscale with
#   p 0.2.
# mmlt.ColorJitter is torchvision's colour jitter; MMPretrain's crashes on
# negative hue shifts with numpy 2 (mmcv 2.1).
# Test: resize the short side to 256, center crop 224.
_base_ = ['./timm_randaugment.py']

data_preprocessor = dict(
    type='mmlt.MultiViewDataPreprocessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    to_rgb=True)

# RandAugment fills uncovered pixels with the ImageNet mean colour (in BGR
# order: the images are BGR until the data preprocessor).
randaugment_pad_val = [104, 116, 124]

cls_view = [
    dict(
        type='RandomResizedCrop',
        scale=224,
        crop_ratio_range=(0.08, 1.0),
        backend='pillow'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(
        type='mmlt.ColorJitter',
        brightness=0.4,
        contrast=0.4,
        saturation=0.4,
        channel_order='bgr'),
    dict(
        type='RandAugment',
        policies=_base_.timm_randaugment_policies,
        num_policies=2,
        magnitude_level=10,
        magnitude_std=0.5,
        total_level=10,
        hparams=dict(pad_val=randaugment_pad_val, interpolation='bicubic')),
]
contrast_view = [
    dict(
        type='RandomResizedCrop',
        scale=224,
        crop_ratio_range=(0.08, 1.0),
        backend='pillow'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(
        type='RandomApply',
        transforms=[
            dict(
                type='mmlt.ColorJitter',
                brightness=0.4,
                contrast=0.4,
                saturation=0.4,
                hue=0.1,
                channel_order='bgr')
        ],
        prob=0.8),
    # BGR luma weights: the images are BGR.
    dict(
        type='RandomGrayscale',
        prob=0.2,
        keep_channels=True,
        channel_weights=(0.114, 0.587, 0.299)),
]
multi_view_train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='MultiView',
        num_views=[1, 2],
        transforms=[cls_view, contrast_view]),
    dict(type='PackInputs'),
]
# Single-view baselines (CE, LA) train on the classifier view alone, so that
# they differ from ProCo/BCL only by the contrastive branch.
single_view_train_pipeline = [dict(type='LoadImageFromFile')] + cls_view + [
    dict(type='PackInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=256, edge='short', backend='pillow'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]
