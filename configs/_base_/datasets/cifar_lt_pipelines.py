# Pipelines shared by CIFAR-10-LT and CIFAR-100-LT (32x32 RGB arrays), as in
# the ProCo (Du et al., TPAMI 2024) and BCL (Zhu et al., CVPR 2022) code:
# - view 1, the classifier's: random crop with 4-pixel padding, flip,
#   AutoAugment (CIFAR-10 policy), Cutout 16x16 (always applied, filled
#   with 0: the reference code cuts out of the [0, 1] tensor before
#   normalisation);
# - views 2 and 3, contrastive (SimCLR-style): random resized crop (scale
#   0.08-1), flip, colour jitter (0.4, 0.4, 0.4, 0.1) with p 0.8,
#   grayscale with p 0.2. mmlt.ColorJitter is torchvision's colour jitter;
#   MMPretrain's crashes on negative hue shifts with numpy 2 (mmcv 2.1).
_base_ = ['./cifar_autoaugment.py']

# The CIFAR-10 statistics that the reference code uses for both data sets.
# mmlt's CIFAR datasets give RGB arrays: no channel flip.
data_preprocessor = dict(
    type='mmlt.MultiViewDataPreprocessor',
    mean=[125.307, 122.961, 113.8575],
    std=[51.5865, 50.847, 51.255],
    to_rgb=False)

cls_view = [
    dict(type='RandomCrop', crop_size=32, padding=4),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='AutoAugment', policies=_base_.cifar_autoaugment_policies),
    dict(type='Cutout', shape=16, pad_val=0, prob=1.0),
]
contrast_view = [
    dict(
        type='RandomResizedCrop',
        scale=32,
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
                channel_order='rgb')
        ],
        prob=0.8),
    # RGB luma weights: the arrays are RGB.
    dict(
        type='RandomGrayscale',
        prob=0.2,
        keep_channels=True,
        channel_weights=(0.299, 0.587, 0.114)),
]
multi_view_train_pipeline = [
    dict(
        type='MultiView',
        num_views=[1, 2],
        transforms=[cls_view, contrast_view]),
    dict(type='PackInputs'),
]
# Single-view baselines (CE, LA) train on the classifier view alone, so that
# they differ from ProCo/BCL only by the contrastive branch.
single_view_train_pipeline = cls_view + [dict(type='PackInputs')]
test_pipeline = [dict(type='PackInputs')]
