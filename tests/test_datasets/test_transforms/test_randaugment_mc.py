"""mmlt.RandAugmentMC: FixMatch's RandAugment, each operation against a
direct PIL or numpy computation, uniform magnitudes, FixMatch's pool."""
import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageOps

from mmlt.datasets.transforms import RandAugmentMC
from mmlt.datasets.transforms.randaugment_mc import (FIXMATCH_OPS,
                                                     FIXMATCH_RANGES,
                                                     apply_op,
                                                     magnitude_value)


def _image(seed=0, shape=(12, 10, 3)):
    return np.random.RandomState(seed).randint(0, 256, shape).astype(np.uint8)


def _only(name, m=1, **kwargs):
    """One operation, always applied, at magnitude v = m = 1 (the range's
    high end)."""
    kwargs.setdefault('channel_order', 'rgb')
    return RandAugmentMC(num_ops=1, magnitude=m, prob=1.0, ops=[name],
                         **kwargs)


def test_the_pool_is_fixmatchs():
    assert set(FIXMATCH_OPS) == {
        'AutoContrast', 'Brightness', 'Color', 'Contrast', 'Equalize',
        'Identity', 'Posterize', 'Rotate', 'Sharpness', 'ShearX', 'ShearY',
        'Solarize', 'TranslateX', 'TranslateY'
    }
    assert 'Invert' not in FIXMATCH_OPS and 'SolarizeAdd' not in FIXMATCH_OPS
    assert RandAugmentMC().ops == FIXMATCH_OPS
    with pytest.raises(ValueError, match='ops'):
        RandAugmentMC(ops=['Invert'])


def test_the_ranges_are_fixmatchs_table_12():
    m = 10
    for name in ('Brightness', 'Color', 'Contrast', 'Sharpness'):
        assert magnitude_value(name, 0, m) == pytest.approx(0.05)
        assert magnitude_value(name, m, m) == pytest.approx(0.95)
        assert magnitude_value(name, 5, m) == pytest.approx(0.5)
    assert [magnitude_value('Posterize', v, m) for v in range(11)] == \
        [4, 4, 4, 5, 5, 6, 6, 6, 7, 7, 8]
    assert magnitude_value('Solarize', 0, m) == 256
    assert magnitude_value('Solarize', 5, m) == 128
    assert magnitude_value('Solarize', m, m) == 0
    assert magnitude_value('Rotate', m, m) == 30
    assert magnitude_value('Rotate', m, m, negative=True) == -30
    for name in ('ShearX', 'ShearY', 'TranslateX', 'TranslateY'):
        assert magnitude_value(name, m, m) == pytest.approx(0.3)
        assert magnitude_value(name, 4, m, True) == pytest.approx(-0.12)
    # no sign on the colour operations
    assert magnitude_value('Brightness', m, m, negative=True) > 0
    for name in ('AutoContrast', 'Equalize', 'Identity'):
        assert FIXMATCH_RANGES[name] is None
        assert magnitude_value(name, 3, m) is None


@pytest.mark.parametrize('name', ['Brightness', 'Color', 'Contrast',
                                  'Sharpness'])
def test_enhancements_are_pils_at_the_drawn_factor(name):
    img = _image()
    out = _only(name)(dict(img=img.copy()))['img']
    enhancer = getattr(ImageEnhance, name)
    expected = np.asarray(enhancer(Image.fromarray(img)).enhance(0.95))
    np.testing.assert_array_equal(out, expected)


def test_brightness_scales_pixels():
    img = _image(1)
    out = apply_op(Image.fromarray(img), 'Brightness', 0.5)
    np.testing.assert_allclose(np.asarray(out), img * 0.5, atol=1.0)


def test_posterize_and_solarize_in_closed_form():
    img = _image(2)
    pil = Image.fromarray(img)
    np.testing.assert_array_equal(
        np.asarray(apply_op(pil, 'Posterize', 4)), img & 0xF0)
    np.testing.assert_array_equal(
        np.asarray(apply_op(pil, 'Solarize', 100)),
        np.where(img >= 100, 255 - img, img))
    # v = m: all 8 bits kept; threshold 0 inverts every pixel
    assert np.array_equal(_only('Posterize')(dict(img=img.copy()))['img'],
                          img)
    assert np.array_equal(_only('Solarize')(dict(img=img.copy()))['img'],
                          255 - img)


@pytest.mark.parametrize('name', ['AutoContrast', 'Equalize'])
def test_autocontrast_and_equalize_are_pils(name):
    img = _image(3)
    out = _only(name)(dict(img=img.copy()))['img']
    expected = getattr(ImageOps, name.lower())(Image.fromarray(img))
    np.testing.assert_array_equal(out, np.asarray(expected))
    assert np.array_equal(_only('Identity')(dict(img=img.copy()))['img'],
                          img)


def test_translation_shifts_by_a_fraction_of_the_side():
    img = _image(4, (10, 20, 3))
    pil = Image.fromarray(img)
    # +0.3 of 20 = 6 pixels: output column x reads input column x + 6
    out = np.asarray(apply_op(pil, 'TranslateX', 0.3, fill=(128, ) * 3))
    np.testing.assert_array_equal(out[:, :14], img[:, 6:])
    assert (out[:, 14:] == 128).all()
    # -0.2 of 10 = 2 rows the other way
    out = np.asarray(apply_op(pil, 'TranslateY', -0.2, fill=(128, ) * 3))
    np.testing.assert_array_equal(out[2:], img[:-2])
    assert (out[:2] == 128).all()


def test_geometric_operations_are_pils_with_a_random_sign():
    img = _image(5, (16, 16, 3))
    pil = Image.fromarray(img)
    fill = (128, 128, 128)
    expected = {
        'Rotate': {
            np.asarray(pil.rotate(a, fillcolor=fill)).tobytes()
            for a in (30, -30)
        },
        'ShearX': {
            np.asarray(
                pil.transform(pil.size, Image.AFFINE, (1, s, 0, 0, 1, 0),
                              fillcolor=fill)).tobytes()
            for s in (0.3, -0.3)
        },
        'ShearY': {
            np.asarray(
                pil.transform(pil.size, Image.AFFINE, (1, 0, 0, s, 1, 0),
                              fillcolor=fill)).tobytes()
            for s in (0.3, -0.3)
        },
    }
    np.random.seed(0)
    for name, outputs in expected.items():
        transform = _only(name)
        seen = {
            transform(dict(img=img.copy()))['img'].tobytes()
            for _ in range(20)
        }
        assert seen == outputs, name  # both signs, nothing else


def test_magnitudes_are_uniform_over_1_to_m():
    transform = RandAugmentMC(magnitude=10)
    np.random.seed(0)
    draws = [d for _ in range(10000) for d in transform.draw()]
    values = np.array([v for _, v, _, _ in draws])
    counts = np.bincount(values, minlength=12)
    assert counts[0] == 0 and counts[11] == 0
    expected = len(values) / 10
    chi2 = ((counts[1:11] - expected)**2 / expected).sum()
    assert chi2 < 27.88  # the 0.001 quantile of chi-square, 9 dof
    ops = np.bincount([FIXMATCH_OPS.index(n) for n, _, _, _ in draws],
                      minlength=14)
    chi2_ops = ((ops - len(draws) / 14)**2 / (len(draws) / 14)).sum()
    assert chi2_ops < 34.53  # 13 dof
    applied = np.mean([a for _, _, a, _ in draws])
    assert abs(applied - 0.5) < 0.02
    assert all(len(transform.draw()) == 2 for _ in range(5))


def test_deterministic_under_a_seed_and_bgr_is_rgb_reversed():
    img = _image(6, (32, 32, 3))
    transform = RandAugmentMC(channel_order='rgb')
    outs = []
    for _ in range(2):
        np.random.seed(7)
        outs.append([transform(dict(img=img.copy()))['img'] for _ in range(8)])
    for a, b in zip(*outs):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, img) for a in outs[0])
    np.random.seed(7)
    bgr = RandAugmentMC(channel_order='bgr')
    for out in outs[0]:
        flipped = bgr(dict(img=img[..., ::-1].copy()))['img']
        np.testing.assert_array_equal(flipped[..., ::-1], out)


@pytest.mark.parametrize('shape', [(28, 28), (28, 28, 1)])
def test_gray_images_keep_their_shape(shape):
    img = _image(7, shape)
    np.random.seed(1)
    transform = RandAugmentMC(num_ops=3)
    for _ in range(10):
        out = transform(dict(img=img.copy()))['img']
        assert out.shape == shape and out.dtype == np.uint8
    out = _only('TranslateX')(dict(img=img.copy()))['img']
    assert out.shape == shape
    assert (out.reshape(28, 28)[:, -8:] == 128).all() or \
        (out.reshape(28, 28)[:, :8] == 128).all()


def test_bad_input_and_arguments_are_refused():
    with pytest.raises(ValueError, match='uint8'):
        RandAugmentMC()(dict(img=np.zeros((4, 4, 3), np.float32)))
    with pytest.raises(ValueError, match='prob'):
        RandAugmentMC(prob=1.5)
    with pytest.raises(ValueError, match='magnitude'):
        RandAugmentMC(magnitude=0)


def test_builds_from_a_config_under_mmpretrain():
    from mmpretrain.registry import TRANSFORMS
    transform = TRANSFORMS.build(
        dict(type='mmlt.RandAugmentMC', channel_order='rgb'))
    assert isinstance(transform, RandAugmentMC)
    assert 'num_ops=2' in repr(transform)
