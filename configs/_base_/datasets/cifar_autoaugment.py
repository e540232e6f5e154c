# AutoAugment's CIFAR-10 policy (Cubuk et al., "AutoAugment: Learning
# Augmentation Strategies from Data", CVPR 2019, appendix: the 25
# sub-policies found on reduced CIFAR-10) as MMPretrain transforms, for
# `dict(type='AutoAugment', policies=cifar_autoaugment_policies)`.
# MMPretrain ships only the ImageNet policy. ProCo and BCL use this policy on
# the classifier view of CIFAR-LT.
#
# Each sub-policy is two (operation, probability, magnitude level) triples;
# AutoAugment picks one sub-policy per image and applies each of its two
# operations with its probability. The paper discretises every magnitude into
# 10 levels m = 0..9 spread uniformly over the operation's range; as in the
# PyTorch port that the ProCo/BCL code uses, level m is the value
#     lo + (hi - lo) * m / 9
# of the ranges below, written out as `hi / 9 * m` (MMPretrain's ImageNet
# policy is written the same way):
#   Shear(X|Y)      shear factor 0..0.3, random sign   -> Shear(magnitude)
#   Translate(X|Y)  0..150/331 of the image side (150 px of 331 in the paper),
#                   random sign                        -> Translate(magnitude)
#   Rotate          0..30 degrees, random sign         -> Rotate(angle)
#   Color, Contrast, Brightness, Sharpness: enhancement factor 1 +/- 0..0.9
#                   (random sign)                      -> X(magnitude), which
#                   MMPretrain applies as factor 1 + magnitude with a random
#                   sign (random_negative_prob 0.5)
#   Solarize        threshold 256..0                   -> Solarize(thr)
#   Posterize       bits round(8..4)                   -> Posterize(bits):
#                   level 7 -> round(8 - 4 * 7 / 9) = 5 bits
#   AutoContrast, Equalize, Invert: no magnitude.
# Pixels uncovered by geometric operations are filled with 128 (AutoAugment's
# default hparams pad_val=128, as in the port).
_shear = 0.3 / 9
_translate = 150 / 331 / 9
_rotate = 30 / 9
_enhance = 0.9 / 9
_solarize = 256 / 9

cifar_autoaugment_policies = [
    [dict(type='Invert', prob=0.1),
     dict(type='Contrast', magnitude=_enhance * 6, prob=0.2)],
    [dict(type='Rotate', angle=_rotate * 2, prob=0.7),
     dict(type='Translate', magnitude=_translate * 9, prob=0.3,
          direction='horizontal')],
    [dict(type='Sharpness', magnitude=_enhance * 1, prob=0.8),
     dict(type='Sharpness', magnitude=_enhance * 3, prob=0.9)],
    [dict(type='Shear', magnitude=_shear * 8, prob=0.5,
          direction='vertical'),
     dict(type='Translate', magnitude=_translate * 9, prob=0.7,
          direction='vertical')],
    [dict(type='AutoContrast', prob=0.5),
     dict(type='Equalize', prob=0.9)],
    [dict(type='Shear', magnitude=_shear * 7, prob=0.2,
          direction='vertical'),
     dict(type='Posterize', bits=5, prob=0.3)],
    [dict(type='ColorTransform', magnitude=_enhance * 3, prob=0.4),
     dict(type='Brightness', magnitude=_enhance * 7, prob=0.6)],
    [dict(type='Sharpness', magnitude=_enhance * 9, prob=0.3),
     dict(type='Brightness', magnitude=_enhance * 9, prob=0.7)],
    [dict(type='Equalize', prob=0.6),
     dict(type='Equalize', prob=0.5)],
    [dict(type='Contrast', magnitude=_enhance * 7, prob=0.6),
     dict(type='Sharpness', magnitude=_enhance * 5, prob=0.6)],
    [dict(type='ColorTransform', magnitude=_enhance * 7, prob=0.7),
     dict(type='Translate', magnitude=_translate * 8, prob=0.5,
          direction='horizontal')],
    [dict(type='Equalize', prob=0.3),
     dict(type='AutoContrast', prob=0.4)],
    [dict(type='Translate', magnitude=_translate * 3, prob=0.4,
          direction='vertical'),
     dict(type='Sharpness', magnitude=_enhance * 6, prob=0.2)],
    [dict(type='Brightness', magnitude=_enhance * 6, prob=0.9),
     dict(type='ColorTransform', magnitude=_enhance * 8, prob=0.2)],
    [dict(type='Solarize', thr=_solarize * (9 - 2), prob=0.5),
     dict(type='Invert', prob=0.0)],
    [dict(type='Equalize', prob=0.2),
     dict(type='AutoContrast', prob=0.6)],
    [dict(type='Equalize', prob=0.2),
     dict(type='Equalize', prob=0.8)],
    [dict(type='ColorTransform', magnitude=_enhance * 9, prob=0.9),
     dict(type='Equalize', prob=0.6)],
    [dict(type='AutoContrast', prob=0.8),
     dict(type='Solarize', thr=_solarize * (9 - 8), prob=0.2)],
    [dict(type='Brightness', magnitude=_enhance * 3, prob=0.1),
     dict(type='ColorTransform', magnitude=_enhance * 0, prob=0.7)],
    [dict(type='Solarize', thr=_solarize * (9 - 5), prob=0.4),
     dict(type='AutoContrast', prob=0.9)],
    [dict(type='Translate', magnitude=_translate * 9, prob=0.9,
          direction='vertical'),
     dict(type='Translate', magnitude=_translate * 9, prob=0.7,
          direction='vertical')],
    [dict(type='AutoContrast', prob=0.9),
     dict(type='Solarize', thr=_solarize * (9 - 3), prob=0.8)],
    [dict(type='Equalize', prob=0.8),
     dict(type='Invert', prob=0.1)],
    [dict(type='Translate', magnitude=_translate * 9, prob=0.7,
          direction='vertical'),
     dict(type='AutoContrast', prob=0.9)],
]
# Keep the helper constants out of the final config.
del _shear, _translate, _rotate, _enhance, _solarize
