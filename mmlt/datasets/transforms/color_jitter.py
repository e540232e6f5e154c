"""Colour jitter with torchvision's semantics, safe under numpy 2.

MMPretrain's ``ColorJitter`` shifts the hue through ``mmcv.adjust_hue``,
which in mmcv 2.1 computes ``np.uint8(hue_factor * 255)``; numpy >= 2 raises
``OverflowError`` there for every negative factor, so a hue jitter (SimCLR's
``hue=0.1``) crashes about half of the time. This transform jitters like
``torchvision.transforms.ColorJitter`` on PIL images, the augmentation of the
ProCo/BCL reference code: the four adjustments in random order, each with a
factor drawn uniformly from its range, through ``PIL.ImageEnhance`` and a
wrap-around shift of PIL's 8-bit HSV hue.
"""
import numbers
from typing import Optional, Sequence, Tuple, Union

import numpy as np

from mmlt.registry import TRANSFORMS
from mmlt.utils.validation import check_choice

Range = Union[float, Sequence[float]]


def _factor_range(value: Range, name: str, center: float,
                  bound: Tuple[float, float]) -> Optional[Tuple[float, float]]:
    """``(lo, hi)`` of the factor, or None when it is always ``center``."""
    if isinstance(value, numbers.Number) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(
                f'{name}={value}: a single number must be >= 0 (the factor '
                f'is drawn from [{center} - {name}, {center} + {name}])')
        lo, hi = center - float(value), center + float(value)
        if name != 'hue':
            lo = max(lo, 0.)
    elif isinstance(value, (tuple, list)) and len(value) == 2:
        lo, hi = float(value[0]), float(value[1])
    else:
        raise ValueError(f'{name}={value!r}: expected a number or a (min, '
                         'max) pair')
    if not bound[0] <= lo <= hi <= bound[1]:
        raise ValueError(
            f'{name} range ({lo}, {hi}) must satisfy {bound[0]} <= min <= '
            f'max <= {bound[1]}')
    if lo == hi == center:
        return None
    return lo, hi


def adjust_hue(rgb: np.ndarray, hue_factor: float) -> np.ndarray:
    """Rotate the hue of an RGB uint8 image by ``hue_factor`` turns.

    As torchvision does for PIL images: convert to PIL's 8-bit HSV, add
    ``int(hue_factor * 255)`` to the hue channel modulo 256, convert back.

    Args:
        rgb (np.ndarray): ``(H, W, 3)`` uint8 image in RGB order.
        hue_factor (float): In ``[-0.5, 0.5]``.

    Returns:
        np.ndarray: ``(H, W, 3)`` uint8 image.
    """
    from PIL import Image
    if not -0.5 <= hue_factor <= 0.5:
        raise ValueError(f'hue_factor={hue_factor} is not in [-0.5, 0.5]')
    hue, saturation, value = Image.fromarray(rgb, 'RGB').convert(
        'HSV').split()
    # The modulo of a Python int wraps negative shifts around the hue circle.
    shift = int(hue_factor * 255) % 256
    hue = (np.asarray(hue, dtype=np.int64) + shift) % 256
    hsv = Image.merge(
        'HSV',
        (Image.fromarray(hue.astype(np.uint8), 'L'), saturation, value))
    return np.asarray(hsv.convert('RGB'), dtype=np.uint8)


@TRANSFORMS.register_module()
class ColorJitter:
    """Randomly change brightness, contrast, saturation and hue.

    torchvision's ``ColorJitter`` for PIL images, as used by SimCLR and by the
    ProCo (Du et al., TPAMI 2024) and BCL (Zhu et al., CVPR 2022) pipelines:
    the adjustments run in a random order, each with a factor drawn uniformly
    from its range; brightness, contrast and saturation blend the image with
    black, its mean gray level and its grayscale version
    (``PIL.ImageEnhance``), and hue rotates PIL's 8-bit HSV hue (see
    :func:`adjust_hue`). Randomness comes from ``np.random`` like
    MMPretrain's transforms, so dataloader workers are seeded by MMEngine.

    Reads and writes ``results['img']``: ``(H, W, 3)`` uint8 in
    ``channel_order``, or ``(H, W)`` gray (saturation and hue are then
    no-ops).

    Args:
        brightness (float | Sequence[float]): The factor is drawn from
            ``[max(0, 1 - brightness), 1 + brightness]`` or the given
            ``(min, max)``. Defaults to 0 (unchanged).
        contrast (float | Sequence[float]): Likewise. Defaults to 0.
        saturation (float | Sequence[float]): Likewise. Defaults to 0.
        hue (float | Sequence[float]): The shift, in turns of the colour
            circle, is drawn from ``[-hue, hue]`` (``hue <= 0.5``) or the
            given ``(min, max)`` within ``[-0.5, 0.5]``. Defaults to 0.
        channel_order (str): ``'bgr'`` for images read by
            ``LoadImageFromFile`` (the default), ``'rgb'`` for mmlt's CIFAR
            and Fashion-MNIST arrays. The gray level weights R, G and B as
            0.299, 0.587, 0.114.
    """

    def __init__(self,
                 brightness: Range = 0.,
                 contrast: Range = 0.,
                 saturation: Range = 0.,
                 hue: Range = 0.,
                 channel_order: str = 'bgr') -> None:
        inf = float('inf')
        self.brightness = _factor_range(brightness, 'brightness', 1.,
                                        (0., inf))
        self.contrast = _factor_range(contrast, 'contrast', 1., (0., inf))
        self.saturation = _factor_range(saturation, 'saturation', 1.,
                                        (0., inf))
        self.hue = _factor_range(hue, 'hue', 0., (-0.5, 0.5))
        check_choice('channel_order', channel_order, ('bgr', 'rgb'))
        self.channel_order = channel_order

    def _random_factors(self):
        order = np.random.permutation(4)
        factors = [
            None if r is None else np.random.uniform(r[0], r[1])
            for r in (self.brightness, self.contrast, self.saturation,
                      self.hue)
        ]
        return order, factors

    def transform(self, results: dict) -> dict:
        """Jitter ``results['img']`` in place of the dict entry."""
        from PIL import Image, ImageEnhance
        img = results['img']
        if not (isinstance(img, np.ndarray) and img.dtype == np.uint8 and (
                img.ndim == 2 or (img.ndim == 3 and img.shape[2] == 3))):
            raise ValueError(
                'ColorJitter expects an (H, W, 3) or (H, W) uint8 image, got '
                f'{getattr(img, "dtype", type(img))} of shape '
                f'{getattr(img, "shape", None)}')
        gray = img.ndim == 2
        flip = not gray and self.channel_order == 'bgr'
        rgb = np.ascontiguousarray(img[..., ::-1] if flip else img)
        pil = Image.fromarray(rgb, 'L' if gray else 'RGB')
        order, factors = self._random_factors()
        enhancers = (ImageEnhance.Brightness, ImageEnhance.Contrast,
                     ImageEnhance.Color)
        for index in order:
            factor = factors[index]
            if factor is None or (gray and index >= 2):
                continue
            if index < 3:
                pil = enhancers[index](pil).enhance(factor)
            else:
                pil = Image.fromarray(
                    adjust_hue(np.asarray(pil), factor), 'RGB')
        out = np.asarray(pil, dtype=np.uint8)
        results['img'] = np.ascontiguousarray(out[..., ::-1] if flip else out)
        return results

    def __call__(self, results: dict) -> dict:
        return self.transform(results)

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(brightness={self.brightness}, '
                f'contrast={self.contrast}, saturation={self.saturation}, '
                f'hue={self.hue}, channel_order={self.channel_order!r})')
