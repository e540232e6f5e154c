"""FixMatch's RandAugment: a uniform magnitude per operation.

FixMatch (Sohn et al., NeurIPS 2020, section 2.3 and appendix, Table 12)
uses a variant of RandAugment (Cubuk et al., CVPR Workshops 2020) for its
strong view: ``N = 2`` operations drawn uniformly from 14, each applied with
probability 0.5, and instead of one fixed global magnitude each operation
draws its own, uniformly; then Cutout. DARP, DASO and ACR use it for their
long-tailed semi-supervised CIFAR protocols. Its pool has neither Invert nor
SolarizeAdd, and its ranges are narrower than timm's default RandAugment
(``configs/_base_/datasets/timm_randaugment.py``): translation at most 0.3
of the side, the enhancement factors in ``[0.05, 0.95]``.

The magnitude ``v`` is an integer drawn uniformly from ``1..m`` (``m`` = 10);
an operation's value is its range's low end plus ``v / m`` of the range:

=========================================  ====================  ===========
operation                                  value at ``v = m``    random sign
=========================================  ====================  ===========
Brightness, Color, Contrast, Sharpness     factor 0.05 -> 0.95   no
Posterize (bits kept)                      4 -> 8                no
Rotate (degrees)                           0 -> 30               yes
ShearX, ShearY                             0 -> 0.3              yes
Solarize (threshold)                       256 -> 0              no
TranslateX, TranslateY (of the side)       0 -> 0.3              yes
AutoContrast, Equalize, Identity           no magnitude
=========================================  ====================  ===========

Integer values (Posterize, Solarize) move by ``int(range * v / m)``.
"""
from typing import Optional, Sequence, Union

import numpy as np

from mmlt.registry import TRANSFORMS
from mmlt.utils.validation import check_choice, check_int, check_number

#: operation -> (value at v = 0, value at v = m, random sign, integer),
#: or None for the operations without a magnitude.
FIXMATCH_RANGES = {
    'AutoContrast': None,
    'Brightness': (0.05, 0.95, False, False),
    'Color': (0.05, 0.95, False, False),
    'Contrast': (0.05, 0.95, False, False),
    'Equalize': None,
    'Identity': None,
    'Posterize': (4, 8, False, True),
    'Rotate': (0., 30., True, False),
    'Sharpness': (0.05, 0.95, False, False),
    'ShearX': (0., 0.3, True, False),
    'ShearY': (0., 0.3, True, False),
    'Solarize': (256, 0, False, True),
    'TranslateX': (0., 0.3, True, False),
    'TranslateY': (0., 0.3, True, False),
}
#: FixMatch's pool of operations, in the order of its Table 12.
FIXMATCH_OPS = tuple(FIXMATCH_RANGES)


def magnitude_value(name: str, v: int, m: int, negative: bool = False):
    """The value of operation ``name`` at magnitude ``v`` of ``m``.

    Args:
        name (str): One of :data:`FIXMATCH_OPS`.
        v (int): The magnitude, in ``0..m``.
        m (int): The largest magnitude.
        negative (bool): Negate the value (operations with a random sign
            only). Defaults to False.

    Returns:
        float | int | None: The factor, bits, degrees, shear, threshold or
        fraction of the side; None for the operations without a magnitude.
    """
    spec = FIXMATCH_RANGES[name]
    if spec is None:
        return None
    low, high, signed, integer = spec
    value = low + (int((high - low) * v / m) if integer else
                   (high - low) * v / m)
    return -value if signed and negative else value


def apply_op(img, name: str, value, fill: Union[int, tuple] = 128):
    """Apply operation ``name`` with ``value`` to the PIL image ``img``.

    Geometric operations resample with nearest neighbours and fill the area
    they uncover with ``fill``. Translations move by ``int(value * side)``
    pixels.
    """
    from PIL import Image, ImageEnhance, ImageOps
    enhancers = dict(Brightness=ImageEnhance.Brightness,
                     Color=ImageEnhance.Color,
                     Contrast=ImageEnhance.Contrast,
                     Sharpness=ImageEnhance.Sharpness)
    if name in enhancers:
        return enhancers[name](img).enhance(value)
    if name == 'Identity':
        return img
    if name == 'AutoContrast':
        return ImageOps.autocontrast(img)
    if name == 'Equalize':
        return ImageOps.equalize(img)
    if name == 'Posterize':
        return ImageOps.posterize(img, int(value))
    if name == 'Solarize':
        return ImageOps.solarize(img, int(value))
    if name == 'Rotate':
        return img.rotate(value, fillcolor=fill)
    width, height = img.size
    coefficients = dict(
        ShearX=(1, value, 0, 0, 1, 0),
        ShearY=(1, 0, 0, value, 1, 0),
        TranslateX=(1, 0, int(value * width), 0, 1, 0),
        TranslateY=(1, 0, 0, 0, 1, int(value * height)))[name]
    return img.transform(img.size, Image.AFFINE, coefficients,
                         fillcolor=fill)


@TRANSFORMS.register_module()
class RandAugmentMC:
    """FixMatch's RandAugment with a uniform random magnitude.

    Draws ``num_ops`` operations uniformly, with replacement, from ``ops``
    (FixMatch's 14 by default, see the module's table). Each one is applied
    with probability ``prob`` at a magnitude ``v`` drawn uniformly from the
    integers ``1..magnitude``, with a random sign where the table says so.
    Cutout is not included: FixMatch applies it after, as a transform of
    its own (MMPretrain's ``Cutout``). Randomness comes from ``np.random``,
    which MMEngine seeds per worker and :class:`mmlt.SeededDataset` per item.

    Reads and writes ``results['img']``: ``(H, W, 3)`` uint8 in
    ``channel_order``, or gray ``(H, W)`` / ``(H, W, 1)``, which keeps its
    shape.

    Args:
        num_ops (int): Operations per image. Defaults to 2.
        magnitude (int): ``m``, the largest magnitude. Defaults to 10.
        prob (float): Probability of applying each drawn operation.
            Defaults to 0.5.
        ops (Sequence[str], optional): The pool, a subset of
            :data:`FIXMATCH_OPS`. Defaults to all of them.
        fill (int): Gray level of the area that geometric operations
            uncover. Defaults to 128.
        channel_order (str): ``'bgr'`` (the default, images read by
            ``LoadImageFromFile``) or ``'rgb'`` (mmlt's CIFAR and
            Fashion-MNIST arrays). Color and Contrast weigh the channels.
    """

    def __init__(self,
                 num_ops: int = 2,
                 magnitude: int = 10,
                 prob: float = 0.5,
                 ops: Optional[Sequence[str]] = None,
                 fill: int = 128,
                 channel_order: str = 'bgr') -> None:
        self.num_ops = check_int('num_ops', num_ops)
        self.magnitude = check_int('magnitude', magnitude)
        self.prob = check_number('prob', prob, minimum=0.)
        if self.prob > 1:
            raise ValueError(f'prob must be in [0, 1], got {prob!r}')
        self.ops = tuple(FIXMATCH_OPS if ops is None else ops)
        if not self.ops:
            raise ValueError('ops must name at least one operation')
        for name in self.ops:
            check_choice('ops', name, FIXMATCH_OPS)
        self.fill = check_int('fill', fill, minimum=0)
        check_choice('channel_order', channel_order, ('bgr', 'rgb'))
        self.channel_order = channel_order

    def draw(self) -> list:
        """The random choices for one image: ``(operation, v, applied,
        negative)`` per drawn operation."""
        draws = []
        for _ in range(self.num_ops):
            name = self.ops[np.random.randint(len(self.ops))]
            v = int(np.random.randint(1, self.magnitude + 1))
            applied = bool(np.random.random() < self.prob)
            negative = bool(np.random.random() < 0.5)
            draws.append((name, v, applied, negative))
        return draws

    def transform(self, results: dict) -> dict:
        """Augment ``results['img']``."""
        from PIL import Image
        img = results['img']
        if not (isinstance(img, np.ndarray) and img.dtype == np.uint8 and (
                img.ndim == 2 or (img.ndim == 3 and img.shape[2] in (1, 3)))):
            raise ValueError(
                'RandAugmentMC expects an (H, W, 3), (H, W, 1) or (H, W) '
                f'uint8 image, got {getattr(img, "dtype", type(img))} of '
                f'shape {getattr(img, "shape", None)}')
        gray = img.ndim == 2 or img.shape[2] == 1
        flip = not gray and self.channel_order == 'bgr'
        plane = img.reshape(img.shape[:2]) if gray else img
        pil = Image.fromarray(
            np.ascontiguousarray(plane[..., ::-1] if flip else plane),
            'L' if gray else 'RGB')
        fill = self.fill if gray else (self.fill, ) * 3
        for name, v, applied, negative in self.draw():
            if applied:
                value = magnitude_value(name, v, self.magnitude, negative)
                pil = apply_op(pil, name, value, fill)
        out = np.asarray(pil, dtype=np.uint8)
        out = out[..., ::-1] if flip else out
        results['img'] = np.ascontiguousarray(out.reshape(img.shape))
        return results

    def __call__(self, results: dict) -> dict:
        return self.transform(results)

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(num_ops={self.num_ops}, '
                f'magnitude={self.magnitude}, prob={self.prob}, '
                f'ops={self.ops}, fill={self.fill}, '
                f'channel_order={self.channel_order!r})')
