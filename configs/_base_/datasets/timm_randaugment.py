# RandAugment (Cubuk et al., CVPR Workshops 2020) with the operations and
# magnitude mappings of timm's default `rand-n2-m10-mstd0.5` policy, which the
# ProCo and BCL code applies to the classifier view on ImageNet-LT and
# iNaturalist 2018, for
#     dict(type='RandAugment', policies=timm_randaugment_policies,
#          num_policies=2, magnitude_level=10, magnitude_std=0.5,
#          total_level=10)
# MMPretrain's preset 'timm_increasing' is timm's *increasing* variant, which
# differs (e.g. Posterize keeps 0 bits at level 10, and the enhancement
# factors go both ways), so the default set is written out here.
#
# MMPretrain maps a level m in [0, total_level] linearly onto
# `magnitude_range=(lo, hi)`: value = lo + (hi - lo) * m / total_level; timm
# maps its level m in [0, 10] as follows, giving these ranges:
#   Rotate              30 * m/10 degrees, random sign       -> (0, 30)
#   Posterize           int(4 * m/10) bits kept               -> (0, 4)
#                       (MMPretrain rounds up: ceil instead of int)
#   Solarize            threshold 256 - 256 * m/10            -> (256, 0)
#   SolarizeAdd         add 110 * m/10 below threshold 128    -> (0, 110)
#   Color, Contrast, Brightness, Sharpness: factor 0.1 + 1.8 * m/10, no
#                       random sign; MMPretrain applies 1 + magnitude
#                                                             -> (-0.9, 0.9),
#                                                random_negative_prob=0
#   Shear(X|Y)          0.3 * m/10, random sign               -> (0, 0.3)
#   Translate(X|Y)Rel   0.45 * m/10 of the side, random sign  -> (0, 0.45)
#   AutoContrast, Equalize, Invert: no magnitude.
# Each chosen operation is applied with probability 0.5 (the default `prob`
# of MMPretrain's operations, as in timm); the magnitude is drawn from
# N(10, 0.5) clipped to [0, 10].
timm_randaugment_policies = [
    dict(type='AutoContrast'),
    dict(type='Equalize'),
    dict(type='Invert'),
    dict(type='Rotate', magnitude_range=(0, 30)),
    dict(type='Posterize', magnitude_range=(0, 4)),
    dict(type='Solarize', magnitude_range=(256, 0)),
    dict(type='SolarizeAdd', magnitude_range=(0, 110)),
    dict(
        type='ColorTransform',
        magnitude_range=(-0.9, 0.9),
        random_negative_prob=0.),
    dict(type='Contrast', magnitude_range=(-0.9, 0.9),
         random_negative_prob=0.),
    dict(
        type='Brightness', magnitude_range=(-0.9, 0.9),
        random_negative_prob=0.),
    dict(
        type='Sharpness', magnitude_range=(-0.9, 0.9),
        random_negative_prob=0.),
    dict(type='Shear', magnitude_range=(0, 0.3), direction='horizontal'),
    dict(type='Shear', magnitude_range=(0, 0.3), direction='vertical'),
    dict(
        type='Translate', magnitude_range=(0, 0.45), direction='horizontal'),
    dict(type='Translate', magnitude_range=(0, 0.45), direction='vertical'),
]
