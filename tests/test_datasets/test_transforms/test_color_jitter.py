"""mmlt.ColorJitter: torchvision's colour jitter, checked against closed-form
blends and a per-pixel colorsys hue rotation."""
import colorsys

import numpy as np
import pytest
from mmengine.dataset import Compose

from mmlt.datasets.transforms import ColorJitter
from mmlt.datasets.transforms.color_jitter import adjust_hue


def _image(seed=0, shape=(12, 10, 3)):
    return np.random.RandomState(seed).randint(0, 256, shape).astype(np.uint8)


def _luma(rgb):
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


def _jitter(img, **kwargs):
    kwargs.setdefault('channel_order', 'rgb')
    return ColorJitter(**kwargs).transform(dict(img=img.copy()))['img']


@pytest.mark.parametrize('factor', [0.3, 1.0, 1.7])
def test_brightness_scales_pixels(factor):
    img = _image()
    out = _jitter(img, brightness=(factor, factor))
    expected = np.clip(img * factor, 0, 255)
    assert out.dtype == np.uint8 and out.shape == img.shape
    np.testing.assert_allclose(out, expected, atol=1.0)


@pytest.mark.parametrize('factor', [0.2, 1.6])
def test_contrast_blends_with_the_mean_gray(factor):
    img = _image(1)
    out = _jitter(img, contrast=(factor, factor))
    mean = np.round(_luma(img.astype(np.float64)).mean())
    expected = np.clip(mean + factor * (img - mean), 0, 255)
    np.testing.assert_allclose(out, expected, atol=2.0)


@pytest.mark.parametrize('factor', [0.0, 0.5, 1.5])
def test_saturation_blends_with_the_grayscale(factor):
    img = _image(2)
    out = _jitter(img, saturation=(factor, factor))
    gray = _luma(img.astype(np.float64))[..., None]
    expected = np.clip(gray + factor * (img - gray), 0, 255)
    np.testing.assert_allclose(out, expected, atol=2.0)
    if factor == 0.0:  # fully desaturated: the three channels agree
        assert np.abs(out.astype(int) - out[..., :1]).max() <= 1


def _colorsys_hue(img, hue_factor):
    """Slow reference: per-pixel HSV rotation by int(h * 255) / 255 turns."""
    shift = (int(hue_factor * 255) % 256) / 256
    out = np.empty(img.shape, np.float64)
    for idx in np.ndindex(img.shape[:2]):
        h, s, v = colorsys.rgb_to_hsv(*(img[idx] / 255.0))
        out[idx] = np.array(colorsys.hsv_to_rgb((h + shift) % 1.0, s, v))
    return out * 255


@pytest.mark.parametrize('hue_factor', [-0.5, -0.1, -0.01, 0.05, 0.3])
def test_hue_rotation_matches_colorsys(hue_factor):
    img = _image(3)
    out = adjust_hue(img, hue_factor).astype(np.float64)
    expected = _colorsys_hue(img, hue_factor)
    # PIL's HSV holds each channel in 8 bits: one hue step (1/256 turn)
    # moves a channel by up to 6 levels, so single pixels differ by a few
    # levels; on average under one. (The opposite rotation is off by 5 to
    # 100 levels on average, except at half a turn.)
    assert np.abs(out - expected).max() <= 10
    assert np.abs(out - expected).mean() <= 1.0
    # the transform, with the range pinned to this factor, does the same
    np.testing.assert_array_equal(
        _jitter(img, hue=(hue_factor, hue_factor)), out.astype(np.uint8))


def test_negative_hue_shifts_do_not_overflow_and_invert():
    """The numpy-2 failure of mmcv.adjust_hue: negative factors."""
    img = _image(4)
    back = adjust_hue(adjust_hue(img, -0.2), 0.2)
    assert np.abs(back.astype(int) - img).mean() <= 2
    gray = np.repeat(_image(5, (6, 6, 1)), 3, axis=2)
    np.testing.assert_array_equal(adjust_hue(gray, -0.4), gray)


def test_bgr_order_is_the_rgb_result_reversed():
    img = _image(6)
    kwargs = dict(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1)
    np.random.seed(3)
    rgb_out = _jitter(img, channel_order='rgb', **kwargs)
    np.random.seed(3)
    bgr_out = _jitter(img[..., ::-1].copy(), channel_order='bgr', **kwargs)
    np.testing.assert_array_equal(bgr_out, rgb_out[..., ::-1])
    assert not np.array_equal(rgb_out, img)


def test_gray_images_skip_saturation_and_hue():
    img = _image(7, (8, 9))
    out = _jitter(img, saturation=(0.1, 0.1), hue=(0.4, 0.4))
    np.testing.assert_array_equal(out, img)
    out = _jitter(img, brightness=(0.5, 0.5))
    assert out.shape == img.shape
    np.testing.assert_allclose(out, img * 0.5, atol=1.0)


def test_factors_are_drawn_uniformly_in_order():
    jitter = ColorJitter(brightness=0.4, contrast=(0.5, 0.7), hue=0.1)
    assert jitter.brightness == (0.6, 1.4)
    assert jitter.saturation is None
    np.random.seed(0)
    draws, orders = [], set()
    for _ in range(400):
        order, factors = jitter._random_factors()
        orders.add(tuple(order))
        draws.append([f for f in factors if f is not None])
    draws = np.array(draws)
    assert draws[:, 0].min() >= 0.6 and draws[:, 0].max() <= 1.4
    assert draws[:, 1].min() >= 0.5 and draws[:, 1].max() <= 0.7
    assert draws[:, 2].min() >= -0.1 and draws[:, 2].max() <= 0.1
    # uniform: mean within 4 standard errors of the midpoint
    for column, (lo, hi) in zip(draws.T, [(0.6, 1.4), (0.5, 0.7),
                                          (-0.1, 0.1)]):
        se = (hi - lo) / np.sqrt(12 * len(column))
        assert abs(column.mean() - (lo + hi) / 2) < 4 * se
    assert len(orders) == 24  # every order of the four adjustments


def test_brightness_factor_is_clipped_at_zero():
    assert ColorJitter(brightness=1.5).brightness == (0.0, 2.5)


@pytest.mark.parametrize('kwargs', [
    dict(brightness=-0.1),
    dict(hue=0.6),
    dict(hue=(-0.7, 0.1)),
    dict(contrast=(1.2, 0.8)),
    dict(saturation='0.4'),
    dict(channel_order='hsv'),
])
def test_bad_arguments_raise(kwargs):
    with pytest.raises(ValueError):
        ColorJitter(**kwargs)


def test_bad_images_raise():
    with pytest.raises(ValueError, match='uint8'):
        _jitter(np.zeros((4, 4, 3), np.float32), brightness=0.2)
    with pytest.raises(ValueError, match='shape'):
        _jitter(np.zeros((4, 4, 4), np.uint8), brightness=0.2)


def test_builds_from_a_config_as_mmlt_colorjitter():
    pipeline = Compose([dict(type='mmlt.ColorJitter', brightness=(2., 2.))])
    img = _image(8) // 4
    out = pipeline(dict(img=img.copy()))['img']
    np.testing.assert_allclose(out, img * 2.0, atol=1.0)
