# Copyright (c) mmlt contributors. All rights reserved.
"""Tests of mmlt.models.vmf.vmf against independent references.

References: mpmath values stored below as literals, closed forms (p = 2 through
torch.special's Cephes i0e/i1e, p = 3 through sinh and coth), a slow float64
loop over classes, Monte Carlo averages over vMF samples, and gradcheck.
"""
import math

import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck
from torch.utils._python_dispatch import TorchDispatchMode

from mmlt.models.vmf import (bessel_ratio, estimate_kappa,
                               expected_contrast_logits, log_bessel_iv,
                               log_vmf_normalizer)

from vmf_sampling import sample_vmf

# (p, x, log I_{p/2-1}(x), A_p(x) = I_{p/2}(x) / I_{p/2-1}(x)), computed once
# with mpmath 1.3 at 50 significant digits:
#   nu = mpf(p) / 2 - 1
#   I = besseli(nu, x, maxterms=10**8); I1 = besseli(nu + 1, x, maxterms=10**8)
#   (p, x, float(log(I)), float(I1 / I))
# Orders 0, 1/2, 1, 3/2, 7, 23.5..25 (both sides of the switch between the
# shifted and the direct Debye expansion), 63, 511, 2047.
MPMATH_REFERENCE = [
    (2, 1e-6, 2.499999999999844e-13, 4.999999999999375e-07),
    (2, 1e-3, 2.4999998437500175e-07, 0.0004999999375000105),
    (2, 0.5, 0.06154971918548131, 0.24249961258080194),
    (2, 1.0, 0.23591435850717865, 0.4463899658965345),
    (2, 1.5, 0.4987873677156162, 0.5961332388312907),
    (2, 10.0, 7.942972083118695, 0.9485998259548459),
    (2, 100.0, 96.77973268994258, 0.9949873730051688),
    (2, 1e3, 995.6273088898695, 0.9994998748748043),
    (2, 1e4, 9994.475903781433, 0.999949998749875),
    (2, 1e6, 999992.1733063128, 0.999999499999875),
    (3, 1e-6, -7.1335466316266976, 3.333333333333111e-07),
    (3, 1e-3, -3.6796688254691348, 0.0003333333111111132),
    (3, 0.5, -0.531040088311782, 0.16395341373865285),
    (3, 1.0, -0.0643519910735318, 0.3130352854993313),
    (3, 1.5, 0.3272597317985435, 0.43812472631584526),
    (3, 10.0, 7.9297689182371505, 0.9000000041223073),
    (3, 100.0, 96.77847637380128, 0.99),
    (3, 1e3, 995.6271838273043, 0.999),
    (3, 1e4, 9994.475891280807, 0.9999),
    (3, 1e6, 999992.1733061878, 0.999999),
    (4, 1e-6, -14.508657738524095, 2.4999999999998956e-07),
    (4, 1e-3, -7.600902334542085, 0.000249999989583334),
    (4, 0.5, -1.3552054470253345, 0.12371792827832073),
    (4, 1.0, -0.5706479874908312, 0.24019372387008975),
    (4, 1.5, -0.018503714099827526, 0.3441440070687609),
    (4, 10.0, 7.890203834104212, 0.8541853083236816),
    (4, 100.0, 96.77470745759145, 0.9850378800081568),
    (4, 1e3, 995.62680863964, 0.9985003753754931),
    (4, 1e4, 9994.475853778931, 0.999850003750375),
    (4, 1e6, 999992.1733058128, 0.999998500000375),
    (5, 1e-6, -22.04766947825915, 1.9999999999999427e-07),
    (5, 1e-3, -11.686036459786044, 0.00019999999428571455),
    (5, 0.5, -2.3392130423923243, 0.09929355660768976),
    (5, 1.0, -1.2257913526447275, 0.19452804946532512),
    (5, 1.5, -0.49799191406632876, 0.28245506344487264),
    (5, 10.0, 7.824408407159666, 0.8111111060218429),
    (5, 100.0, 96.76842603794778, 0.9801010101010101),
    (5, 1e3, 995.6261833269707, 0.998001001001001),
    (5, 1e4, 9994.475791275807, 0.999800010001),
    (5, 1e6, 999992.1733051878, 0.999998000001),
    (16, 1e-6, -110.08576553073492, 6.249999999999979e-08),
    (16, 1e-3, -61.73147854660999, 6.249999978298611e-05),
    (16, 0.5, -18.221412776219335, 0.03122291557263105),
    (16, 1.0, -13.345995653624481, 0.062284332675995445),
    (16, 1.5, -10.46889548262598, 0.09302771242362867),
    (16, 10.0, 5.472378166951772, 0.4876216679793914),
    (16, 100.0, 96.53359717503209, 0.9274591621097228),
    (16, 1e3, 995.6027967269183, 0.9925243991133803),
    (16, 1e4, 9994.473453659019, 0.9992502437743489),
    (16, 1e6, 999992.1732818128, 0.999992500024375),
    (49, 1e-6, -394.1439513814884, 2.0408163265306113e-08),
    (49, 1e-3, -231.81170231520412, 2.040816325713959e-05),
    (49, 0.5, -85.76586111966422, 0.010203061012654913),
    (49, 1.0, -69.46925122828084, 0.020400003016717745),
    (49, 1.5, -59.92807436895875, 0.03058473051114587),
    (49, 10.0, -14.367731527598918, 0.19649065321353534),
    (49, 100.0, 94.0174047609756, 0.7874945651240423),
    (49, 1e3, 995.3510584211758, 0.9762762381845361),
    (49, 1e4, 9994.448289913369, 0.997602760272231),
    (49, 1e6, 999992.1730301877, 0.9999760002760003),
    (50, 1e-6, -402.9925151226936, 1.9999999999999994e-08),
    (50, 1e-3, -237.2063884171223, 1.9999999992307692e-05),
    (50, 0.5, -88.05329418516716, 0.009999038639561097),
    (50, 1.0, -71.4102636536789, 0.019992313385191793),
    (50, 1.5, -61.66660886173107, 0.029974081643369357),
    (50, 10.0, -15.176560036018126, 0.19283080165195554),
    (50, 100.0, 93.89917614584415, 0.7836607183585961),
    (50, 1e3, 995.3391785968043, 0.9757881217173643),
    (50, 1e4, 9994.447102355105, 0.997552879033773),
    (50, 1e6, 999992.1730183127, 0.9999755002878753),
    (51, 1e-6, -411.85128223756334, 1.9607843137254895e-08),
    (51, 1e-3, -242.61127789269705, 1.9607843130000797e-05),
    (51, 0.5, -90.35092862409702, 0.009803014967224612),
    (51, 1.0, -73.3614714585345, 0.019600594201034795),
    (51, 1.5, -63.41532876642966, 0.029387321305340136),
    (51, 10.0, -15.994871942746386, 0.18930060359285636),
    (51, 100.0, 93.77850595123964, 0.7798500336221177),
    (51, 1e3, 995.3270487194878, 0.9753002552838734),
    (51, 1e4, 9994.445889795661, 0.9975030002955432),
    (51, 1e6, 999992.1730061877, 0.9999750003000003),
    (52, 1e-6, -420.720048686086, 1.9230769230769224e-08),
    (52, 1e-3, -248.0261667019172, 1.9230769223920665e-05),
    (52, 0.5, -92.65856051182051, 0.009614528691776467),
    (52, 1.0, -75.32267106372144, 0.01922392536598856),
    (52, 1.5, -65.17403107768784, 0.028823075592459325),
    (52, 10.0, -16.822502185978447, 0.18589349540184724),
    (52, 100.0, 93.65539703635034, 0.7760624292800256),
    (52, 1e3, 995.3146687922639, 0.974812638874947),
    (52, 1e4, 9994.444652235044, 0.997453124057541),
    (52, 1e6, 999992.1729938127, 0.9999745003123753),
    (128, 1e-6, -1115.0547539263073, 7.8125e-09),
    (128, 1e-3, -679.8661713465265, 7.812499999530498e-06),
    (128, 0.5, -288.3448845946705, 0.003906191314086428),
    (128, 1.0, -244.67368264192413, 0.007812030554365379),
    (128, 1.5, -219.1244984953507, 0.011717165855330626),
    (128, 10.0, -99.22526750663525, 0.07766097638212836),
    (128, 100.0, 77.440120645354, 0.5483291497143352),
    (128, 1e3, 993.6424731259823, 0.9384843895109409),
    (128, 1e4, 9994.27744451442, 0.9936698455377106),
    (128, 1e6, 999992.1713218119, 0.999936501984377),
    (1024, 1e-6, -10093.746251387185, 9.765625e-10),
    (1024, 1e-3, -6563.883303826825, 9.765624999990704e-07),
    (1024, 0.5, -3388.218443463275, 0.0004882811338116638),
    (1024, 1.0, -3034.0198679864234, 0.000976561570494635),
    (1024, 1.5, -2826.826587392533, 0.0014648406129268434),
    (1024, 10.0, -1857.350547945957, 0.009764695669426709),
    (1024, 100.0, -675.9185271991348, 0.09674399486994675),
    (1024, 1e3, 867.6499693085696, 0.611599968624106),
    (1024, 1e4, 9981.422040543677, 0.9501548828001899),
    (1024, 1e6, 999992.0427457504, 0.9994886305604971),
    (4096, 1e-6, -43263.54874414375, 2.44140625e-10),
    (4096, 1e-3, -29123.373688067197, 2.4414062499998545e-07),
    (4096, 0.5, -16402.070880079515, 0.0001220703106818984),
    (4096, 1.0, -14983.198509920576, 0.00024414061045518846),
    (4096, 1.5, -14153.211281035288, 0.0003662108884112684),
    (4096, 10.0, -10269.794739637186, 0.0024413917053599473),
    (4096, 100.0, -5555.194921480218, 0.024399534982850465),
    (4096, 1e3, -724.3292460901483, 0.2311067167883069),
    (4096, 1e4, 9785.677739677381, 0.8159880629586972),
    (4096, 1e6, 999990.0782014969, 0.9979545951042754),
]


def _unit(*shape, generator, dtype=torch.float64):
    vectors = torch.randn(*shape, generator=generator, dtype=dtype)
    return vectors / vectors.norm(dim=-1, keepdim=True)


def _log_sinh(x):
    """log sinh(x) in float64 without overflow or loss for small x."""
    return torch.where(x < 20, torch.log(torch.sinh(x.clamp(max=20))),
                       x + torch.log1p(-torch.exp(-2 * x)) - math.log(2))


class _OpRecorder(TorchDispatchMode):
    """Records every aten op and the largest tensor any op produces."""

    def __init__(self):
        super().__init__()
        self.ops = set()
        self.max_numel = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.ops.add(func.overloadpacket.__name__)
        outputs = out if isinstance(out, (tuple, list)) else [out]
        for tensor in outputs:
            if isinstance(tensor, torch.Tensor):
                self.max_numel = max(self.max_numel, tensor.numel())
        return out


# ---------------------------------------------------------------------------
# log_bessel_iv and bessel_ratio against mpmath.
# ---------------------------------------------------------------------------
def test_log_bessel_iv_matches_mpmath_literals():
    # The issue asks for a relative error <= 1e-10; the method gives ~1e-15
    # here, so a tighter bound catches a loss of accuracy early.
    for p, x, log_i, _ in MPMATH_REFERENCE:
        value = log_bessel_iv(p / 2 - 1, torch.tensor(x, dtype=torch.float64))
        assert abs(value.item() - log_i) <= 1e-12 * abs(log_i), (p, x)


def test_bessel_ratio_matches_mpmath_literals():
    # Issue target: relative error <= 1e-8.
    for p, x, _, ratio in MPMATH_REFERENCE:
        value = bessel_ratio(torch.tensor(x, dtype=torch.float64), p)
        assert abs(value.item() - ratio) <= 1e-12 * ratio, (p, x)
        assert 0 < value.item() < 1


def test_log_vmf_normalizer_matches_mpmath_literals():
    for p, x, log_i, _ in MPMATH_REFERENCE:
        expected = (p / 2 - 1) * math.log(x) - p / 2 * math.log(
            2 * math.pi) - log_i
        value = log_vmf_normalizer(torch.tensor(x, dtype=torch.float64), p)
        assert abs(value.item() -
                   expected) <= 1e-12 * max(abs(expected), 1), (p, x)


def test_against_mpmath_on_random_points():
    mpmath = pytest.importorskip('mpmath')
    gen = torch.Generator().manual_seed(0)
    ps = [2, 3, 5, 9, 24, 51] + torch.randint(
        2, 4097, (20, ), generator=gen).tolist()
    xs = (10**(torch.rand(26, generator=gen, dtype=torch.float64) * 10 -
               6)).tolist()
    with mpmath.workdps(30):
        for p, x in zip(ps, xs):
            nu = mpmath.mpf(p) / 2 - 1
            i_nu = mpmath.besseli(nu, x, maxterms=10**8)
            ratio = float(mpmath.besseli(nu + 1, x, maxterms=10**8) / i_nu)
            log_i = float(mpmath.log(i_nu))
            x64 = torch.tensor(x, dtype=torch.float64)
            # Relative 1e-10 (issue target); next to a zero of log I only an
            # absolute error is meaningful.
            assert abs(log_bessel_iv(p / 2 - 1, x64).item() - log_i) <= max(
                1e-10 * abs(log_i), 1e-11), (p, x)
            assert abs(bessel_ratio(x64, p).item() -
                       ratio) <= 1e-8 * ratio, (p, x)


# ---------------------------------------------------------------------------
# Closed forms and edge cases.
# ---------------------------------------------------------------------------
def test_p2_against_cephes_i0e_i1e():
    # log I_0(x) = log i0e(x) + x loses relative accuracy for x < 1, so the
    # comparison starts there; the literals cover small x.
    x = torch.logspace(0, 6, 400, dtype=torch.float64)
    log_i0 = torch.log(torch.special.i0e(x)) + x
    torch.testing.assert_close(log_bessel_iv(0, x), log_i0, rtol=1e-13, atol=0)
    ratio = torch.special.i1e(x) / torch.special.i0e(x)
    torch.testing.assert_close(bessel_ratio(x, 2), ratio, rtol=1e-13, atol=0)
    torch.testing.assert_close(
        log_vmf_normalizer(x, 2),
        -math.log(2 * math.pi) - log_i0,
        rtol=1e-13,
        atol=1e-13)


def test_p3_closed_forms():
    x = torch.logspace(-6, 6, 400, dtype=torch.float64)
    # C_3(k) = k / (4 pi sinh k).
    expected_log_c = torch.log(x) - math.log(4 * math.pi) - _log_sinh(x)
    torch.testing.assert_close(
        log_vmf_normalizer(x, 3), expected_log_c, rtol=1e-13, atol=1e-14)
    # I_{1/2}(x) = sqrt(2 / (pi x)) sinh x.
    expected_log_i = 0.5 * torch.log(2 / (math.pi * x)) + _log_sinh(x)
    torch.testing.assert_close(
        log_bessel_iv(0.5, x), expected_log_i, rtol=1e-13, atol=1e-13)
    # A_3(k) = coth k - 1/k, by its series where that cancels.
    series = x / 3 - x**3 / 45 + 2 * x**5 / 945
    expected_ratio = torch.where(x < 1e-2, series, 1 / torch.tanh(x) - 1 / x)
    torch.testing.assert_close(
        bessel_ratio(x, 3), expected_ratio, rtol=1e-10, atol=0)


def test_log_bessel_iv_small_argument_keeps_relative_accuracy():
    # log I_0(x) = x^2/4 - x^4/64 + ...: tiny but relatively exact.
    x = torch.tensor([1e-150, 1e-8, 1e-4], dtype=torch.float64)
    expected = x**2 / 4 - x**4 / 64
    torch.testing.assert_close(
        log_bessel_iv(0, x), expected, rtol=1e-14, atol=0)


def test_log_bessel_iv_at_zero():
    zero = torch.zeros(3, dtype=torch.float64)
    assert (log_bessel_iv(0.0, zero) == 0).all()
    for order in (0.5, 300.0):
        assert torch.isneginf(log_bessel_iv(order, zero)).all()
    assert log_bessel_iv(0, 0.0).item() == 0
    assert torch.isneginf(log_bessel_iv(2.0, 0.0))


@pytest.mark.parametrize('p', [2, 3, 16, 1024, 4096])
def test_log_vmf_normalizer_uniform_limit_and_continuity(p):
    uniform = math.lgamma(p / 2) - math.log(2) - p / 2 * math.log(math.pi)
    kappa = torch.tensor([0.0, 1e-300, 1e-8, 1e-3], dtype=torch.float64)
    value = log_vmf_normalizer(kappa, p)
    assert value[0].item() == pytest.approx(uniform, rel=1e-14, abs=1e-14)
    assert value[1].item() == pytest.approx(uniform, rel=1e-14, abs=1e-14)
    assert value[2].item() == pytest.approx(uniform, rel=1e-14, abs=1e-14)
    # log C_p(k) = log C_p(0) - k^2 / (2 p) + O(k^4).
    assert (value[3] - value[0]).item() == pytest.approx(
        -1e-6 / (2 * p), rel=1e-5)
    assert log_vmf_normalizer(0.0, p).item() == pytest.approx(
        uniform, rel=1e-14, abs=1e-14)


@pytest.mark.parametrize('p', [2, 3, 50, 51, 4096])
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_bessel_ratio_strictly_inside_unit_interval(p, dtype):
    kappa = torch.logspace(-6, 6, 1200, dtype=dtype)
    ratio = bessel_ratio(kappa, p)
    assert ratio.dtype == dtype
    assert ((ratio > 0) & (ratio < 1)).all()
    assert (ratio[1:] >= ratio[:-1]).all()  # A_p increases with kappa
    assert bessel_ratio(torch.zeros(1, dtype=dtype), p).item() == 0
    # Small kappa: A_p(k) ~ k / p; huge kappa: 1 - A_p(k) ~ (p - 1) / (2 k).
    assert ratio[0].item() == pytest.approx(1e-6 / p, rel=1e-5)
    if dtype == torch.float64:
        assert 1 - ratio[-1].item() == pytest.approx((p - 1) / 2e6, rel=5e-3)


@pytest.mark.parametrize('p', [2, 3, 64, 4096])
def test_huge_kappa_is_finite(p):
    kappa = torch.tensor([1e6, 1e8, 1e10, 1e15], dtype=torch.float64)
    log_c = log_vmf_normalizer(kappa, p)
    assert torch.isfinite(log_c).all()
    assert (log_c[1:] < log_c[:-1]).all()  # d log C / dk = -A < 0
    # log C_p(k) = v log k - (p/2) log 2 pi - k + log(2 pi k)/2 + O(1/k).
    v = p / 2 - 1
    leading = v * torch.log(kappa) - p / 2 * math.log(
        2 * math.pi) - kappa + 0.5 * torch.log(2 * math.pi * kappa)
    correction = (4 * v * v - 1) / (8 * kappa)
    torch.testing.assert_close(
        log_c, leading + correction, rtol=1e-12, atol=1e-6)


def test_negative_inputs():
    kappa = torch.tensor([-1.0, 1.0], dtype=torch.float64)
    assert torch.isnan(log_vmf_normalizer(kappa, 8)[0])
    assert torch.isnan(bessel_ratio(kappa, 8)[0])
    assert torch.isnan(log_bessel_iv(1.0, kappa)[0])
    with pytest.raises(ValueError, match='nu'):
        log_bessel_iv(-1.0, 1.0)
    assert torch.isfinite(log_vmf_normalizer(kappa, 8)[1])
    with pytest.raises(ValueError, match='kappa'):
        log_vmf_normalizer(-1.0, 8)
    with pytest.raises(ValueError, match='nu'):
        log_bessel_iv(-0.5, 1.0)
    with pytest.raises(ValueError, match='x'):
        log_bessel_iv(0.5, -1.0)


@pytest.mark.parametrize('bad_p', [1, 0, 2.5, True, '3'])
def test_bad_dimension_raises(bad_p):
    with pytest.raises(ValueError, match='p must be an int >= 2'):
        log_vmf_normalizer(torch.ones(2), bad_p)
    with pytest.raises(ValueError, match='p must be an int >= 2'):
        bessel_ratio(torch.ones(2), bad_p)
    with pytest.raises(ValueError, match='p must be an int >= 2'):
        estimate_kappa(torch.ones(2) / 2, bad_p)


@pytest.mark.parametrize('p', [2, 3, 128])
def test_float32_in_float32_out(p):
    kappa = torch.tensor([0.0, 1e-4, 0.7, 30.0, 5e4])
    for fn in (log_vmf_normalizer, bessel_ratio):
        value = fn(kappa, p)
        assert value.dtype == torch.float32
        torch.testing.assert_close(
            value.double(), fn(kappa.double(), p), rtol=1e-6, atol=1e-7)
    value = log_bessel_iv(p / 2 - 1, kappa)
    assert value.dtype == torch.float32
    r = torch.tensor([0.0, 0.5, 0.9])
    assert estimate_kappa(r, p, 'mle').dtype == torch.float32


# ---------------------------------------------------------------------------
# Exact derivatives.
# ---------------------------------------------------------------------------
@pytest.mark.parametrize('p', [2, 3, 50, 1024])
def test_log_vmf_normalizer_gradcheck(p):
    kappa = torch.tensor([1e-3, 0.5, 1.9, 2.1, 30.0, 700.0],
                         dtype=torch.float64,
                         requires_grad=True)
    assert gradcheck(lambda k: log_vmf_normalizer(k, p), (kappa, ))
    assert gradgradcheck(lambda k: log_vmf_normalizer(k, p), (kappa, ))
    assert gradcheck(lambda k: bessel_ratio(k, p), (kappa, ))
    # The derivative is exactly -A_p.
    grad, = torch.autograd.grad(log_vmf_normalizer(kappa, p).sum(), kappa)
    torch.testing.assert_close(grad, -bessel_ratio(kappa.detach(), p))


@pytest.mark.parametrize('p', [2, 4096])
def test_log_vmf_normalizer_gradient_at_zero(p):
    kappa = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    grad, = torch.autograd.grad(log_vmf_normalizer(kappa, p).sum(), kappa)
    assert (grad == 0).all()
    # Second derivative at 0 is -A_p'(0) = -1/p.
    kappa = torch.zeros((), dtype=torch.float64, requires_grad=True)
    grad, = torch.autograd.grad(
        log_vmf_normalizer(kappa, p), kappa, create_graph=True)
    second, = torch.autograd.grad(grad, kappa)
    assert second.item() == pytest.approx(-1 / p, rel=1e-12)


@pytest.mark.parametrize('nu', [0.0, 0.5, 24.5, 300.0])
def test_log_bessel_iv_gradcheck(nu):
    x = torch.tensor([1e-3, 0.5, 1.99, 2.01, 30.0, 700.0],
                     dtype=torch.float64,
                     requires_grad=True)
    assert gradcheck(lambda x: log_bessel_iv(nu, x), (x, ))
    # d/dx log I_0 at 0 is 0.
    zero = torch.zeros((), dtype=torch.float64, requires_grad=True)
    grad, = torch.autograd.grad(log_bessel_iv(0.0, zero), zero)
    assert grad.item() == 0


def test_expected_contrast_logits_gradcheck():
    gen = torch.Generator().manual_seed(0)
    z = _unit(4, 7, generator=gen).requires_grad_()
    mu = _unit(5, 7, generator=gen)
    kappa = torch.tensor([0.0, 0.3, 10.0, 80.0, 2000.0], dtype=torch.float64)
    assert gradcheck(lambda z: expected_contrast_logits(z, mu, kappa, 0.1),
                     (z, ))


# ---------------------------------------------------------------------------
# expected_contrast_logits.
# ---------------------------------------------------------------------------
def _logits_loop(z, mu, kappa, tau):
    """ell_ic = log C_p(kappa_c) - log C_p(||kappa_c mu_c + z_i / tau||)."""
    p = z.shape[1]
    rows = []
    for i in range(z.shape[0]):
        row = []
        for c in range(mu.shape[0]):
            kappa_tilde = torch.linalg.norm(kappa[c] * mu[c] + z[i] / tau)
            row.append(
                log_vmf_normalizer(kappa[c], p) -
                log_vmf_normalizer(kappa_tilde, p))
        rows.append(torch.stack(row))
    return torch.stack(rows)


@pytest.mark.parametrize('p', [2, 5, 300])
def test_expected_contrast_logits_matches_loop(p):
    gen = torch.Generator().manual_seed(p)
    z = _unit(4, p, generator=gen)
    mu = _unit(3, p, generator=gen)
    kappa = torch.tensor([0.0, 7.0, 500.0], dtype=torch.float64)
    ell = expected_contrast_logits(z, mu, kappa, 0.07)
    assert ell.shape == (4, 3) and ell.dtype == torch.float64
    torch.testing.assert_close(
        ell, _logits_loop(z, mu, kappa, 0.07), rtol=1e-10, atol=1e-10)
    # A uniform class (kappa = 0) gives the same logit for every sample.
    torch.testing.assert_close(ell[:, 0], ell[:1, 0].expand(4))


def test_expected_contrast_logits_builds_no_b_c_p_tensor():
    gen = torch.Generator().manual_seed(1)
    batch, classes, p = 8, 50, 64
    z = _unit(batch, p, generator=gen).requires_grad_()
    mu = _unit(classes, p, generator=gen)
    kappa = torch.linspace(0, 100, classes, dtype=torch.float64)
    recorder = _OpRecorder()
    with recorder:
        ell = expected_contrast_logits(z, mu, kappa, 0.1)
        ell.sum().backward()
    assert recorder.max_numel <= max(batch * classes, classes * p)
    # No tensor value is read on the host (.item() dispatches this op).
    assert '_local_scalar_dense' not in recorder.ops
    grad = z.grad.clone()
    z.grad = None
    _logits_loop(z, mu, kappa, 0.1).sum().backward()
    # The closed form uses ||z|| = 1, so the gradients agree on the tangent
    # space of the sphere (the upstream L2 normalisation removes the rest).
    loop_grad, unit = z.grad, z.detach()

    def tangent(g):
        return g - (g * unit).sum(1, keepdim=True) * unit

    torch.testing.assert_close(
        tangent(grad), tangent(loop_grad), rtol=1e-9, atol=1e-9)


def test_no_host_reads_in_bessel_functions():
    recorder = _OpRecorder()
    kappa = torch.tensor([0.0, 0.5, 3.0, 1e4], requires_grad=True)
    with recorder:
        for p in (3, 1024):
            log_vmf_normalizer(kappa, p).sum().backward()
            bessel_ratio(kappa, p).sum().backward()
            for order in (0.0, 1.0, 7.5, 40.0):
                log_bessel_iv(order, kappa)
            estimate_kappa(torch.tensor([0.0, 0.3, 0.99]), p, 'mle')
    assert '_local_scalar_dense' not in recorder.ops
    # The same holds on the meta device, which has no values at all.
    meta = torch.empty(5, device='meta')
    assert log_vmf_normalizer(meta, 7).shape == (5, )
    assert bessel_ratio(meta, 1024).shape == (5, )


def test_expected_contrast_logits_gradient_reaches_z_only():
    gen = torch.Generator().manual_seed(2)
    z = _unit(3, 6, generator=gen, dtype=torch.float32).requires_grad_()
    mu = _unit(4, 6, generator=gen, dtype=torch.float32).requires_grad_()
    kappa = torch.tensor([0.0, 1.0, 20.0, 300.0], requires_grad=True)
    ell = expected_contrast_logits(z, mu, kappa, 0.1)
    assert ell.dtype == torch.float32
    ell.sum().backward()
    assert z.grad is not None and torch.isfinite(z.grad).all()
    assert mu.grad is None and kappa.grad is None
    reference = expected_contrast_logits(z.double(), mu.double(),
                                         kappa.double(), 0.1)
    torch.testing.assert_close(ell.double(), reference, rtol=1e-5, atol=1e-5)


def test_expected_contrast_logits_zero_radicand():
    # kappa = 1/tau and z = -mu give kappa~ = 0 (up to rounding).
    tau = 0.125
    mu = torch.tensor([[0.6, 0.8, 0.0]], dtype=torch.float64)
    z = (-mu).clone().requires_grad_()
    kappa = torch.tensor([1 / tau], dtype=torch.float64)
    ell = expected_contrast_logits(z, mu, kappa, tau)
    ell.sum().backward()
    expected = log_vmf_normalizer(kappa, 3) - log_vmf_normalizer(0.0, 3)
    torch.testing.assert_close(ell[0], expected)
    # d ell / dz = A_p(k~) kappa mu / (tau k~) -> kappa mu / (p tau).
    torch.testing.assert_close(z.grad, mu * kappa / (3 * tau))


@pytest.mark.parametrize('p', [3, 16])
def test_expected_contrast_logits_monte_carlo(p):
    # ell = log E_{z' ~ vMF(mu, kappa)} exp(z . z' / tau).
    gen = torch.Generator().manual_seed(p)
    num_samples, tau = 6000, 0.25
    z = _unit(3, p, generator=gen)
    mu = _unit(3, p, generator=gen)
    kappa = torch.tensor([0.0, 4.0, 40.0], dtype=torch.float64)
    ell = expected_contrast_logits(z, mu, kappa, tau)
    samples = sample_vmf(mu, kappa, num_samples, generator=gen)  # (N, C, p)
    weights = torch.exp(torch.einsum('bp,ncp->nbc', z, samples) / tau)
    estimate = weights.mean(0).log()
    # Delta method: SE of a log-mean is std / (mean sqrt(N)).
    standard_error = weights.std(0) / (weights.mean(0) * num_samples**0.5)
    assert (standard_error < 0.08).all()
    assert ((estimate - ell).abs() <= 5 * standard_error).all()


def test_expected_contrast_logits_bad_input():
    z = torch.randn(2, 4)
    mu = torch.randn(3, 4)
    kappa = torch.ones(3)
    with pytest.raises(ValueError, match='z must be'):
        expected_contrast_logits(z[0], mu, kappa, 0.1)
    with pytest.raises(ValueError, match='mu must be'):
        expected_contrast_logits(z, torch.randn(3, 5), kappa, 0.1)
    with pytest.raises(ValueError, match='kappa must be'):
        expected_contrast_logits(z, mu, torch.ones(2), 0.1)
    with pytest.raises(ValueError, match='tau must be'):
        expected_contrast_logits(z, mu, kappa, 0.0)


# ---------------------------------------------------------------------------
# estimate_kappa.
# ---------------------------------------------------------------------------
@pytest.mark.parametrize('p', [2, 16, 1024])
def test_estimate_kappa_formulas(p):
    r = [0.0, 0.1, 0.5, 0.9]
    banerjee = estimate_kappa(torch.tensor(r, dtype=torch.float64), p)
    official = estimate_kappa(
        torch.tensor(r, dtype=torch.float64), p, method='official')
    for i, value in enumerate(r):
        assert banerjee[i].item() == pytest.approx(
            value * (p - value**2) / (1 - value**2), rel=1e-14)
        assert official[i].item() == pytest.approx(
            p * value / (1 - value**2), rel=1e-14)
    # With no Newton step 'mle' is the Banerjee approximation.
    mle0 = estimate_kappa(
        torch.tensor(r, dtype=torch.float64), p, 'mle', newton_steps=0)
    torch.testing.assert_close(mle0, banerjee)


@pytest.mark.parametrize('p', [2, 3, 16, 128, 1024, 4096])
def test_estimate_kappa_mle_solves_bessel_ratio(p):
    r = torch.cat([
        torch.logspace(-8, -0.01, 60, dtype=torch.float64),
        1 - torch.logspace(-1, -4, 30, dtype=torch.float64)
    ])
    kappa = estimate_kappa(r, p, 'mle', max_kappa=1e9)
    assert (kappa < 1e9).all()
    residual = (bessel_ratio(kappa, p) - r) / r
    assert residual.abs().max() <= 1e-10  # issue target 1e-8
    # And it inverts A_p.
    true_kappa = torch.tensor([0.01, 1.0, 50.0, 3000.0], dtype=torch.float64)
    recovered = estimate_kappa(bessel_ratio(true_kappa, p), p, 'mle')
    torch.testing.assert_close(recovered, true_kappa, rtol=1e-8, atol=0)


@pytest.mark.parametrize('method', ['banerjee', 'official', 'mle'])
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_estimate_kappa_extremes(method, dtype):
    r = torch.tensor([0.0, 0.5, 1 - 1e-12, 1.0], dtype=dtype)
    for p in (2, 3, 1024):
        kappa = estimate_kappa(r, p, method)
        assert kappa.dtype == dtype
        assert torch.isfinite(kappa).all()
        assert kappa[0].item() == 0
        assert kappa[-1].item() == pytest.approx(1e6, rel=1e-6)
        assert 0 < kappa[1].item() < kappa[2].item() <= kappa[3].item()
    capped = estimate_kappa(r, 16, method, max_kappa=100.0)
    assert capped.max().item() == pytest.approx(100.0)
    assert estimate_kappa(0.5, 16, method).dtype == torch.float64


def test_estimate_kappa_bad_arguments():
    r = torch.tensor([0.5])
    with pytest.raises(ValueError, match='method'):
        estimate_kappa(r, 16, method='sra')
    with pytest.raises(ValueError, match='max_kappa'):
        estimate_kappa(r, 16, max_kappa=math.inf)
    with pytest.raises(ValueError, match='newton_steps'):
        estimate_kappa(r, 16, 'mle', newton_steps=-1)
    with pytest.raises(ValueError, match='r must be'):
        estimate_kappa(-0.5, 16)


# ---------------------------------------------------------------------------
# sample_vmf.
# ---------------------------------------------------------------------------
@pytest.mark.parametrize('p', [2, 3, 16, 64])
def test_sample_vmf_mean_resultant_length(p):
    gen = torch.Generator().manual_seed(10 + p)
    mu = _unit(3, p, generator=gen)
    kappa = torch.tensor([0.5, 5.0, 50.0], dtype=torch.float64)
    num_samples = 3000
    samples = sample_vmf(mu, kappa, num_samples, generator=gen)
    assert samples.shape == (num_samples, 3, p)
    torch.testing.assert_close(
        samples.norm(dim=-1), torch.ones(num_samples, 3, dtype=torch.float64))
    w = (samples * mu).sum(-1)
    standard_error = w.std(0) / num_samples**0.5
    assert ((w.mean(0) - bessel_ratio(kappa, p)).abs()
            <= 5 * standard_error).all()
    # The tangent part averages to zero.
    tangent_mean = (samples - w.unsqueeze(-1) * mu).mean(0)
    assert (tangent_mean.norm(dim=-1) < 5 * (1 / num_samples)**0.5).all()


def test_sample_vmf_p3_distribution_of_cosine():
    # On S^2, w = mu . z has density kappa e^{kappa w} / (2 sinh kappa).
    gen = torch.Generator().manual_seed(3)
    kappa, num_samples = 2.5, 4000
    mu = torch.tensor([0.0, 0.6, 0.8], dtype=torch.float64)
    w, _ = (sample_vmf(mu, kappa, num_samples, generator=gen) @ mu).sort()
    cdf = torch.expm1(kappa * (w + 1)) / math.expm1(2 * kappa)
    empirical = torch.arange(
        1, num_samples + 1, dtype=torch.float64) / num_samples
    ks = torch.maximum((empirical - cdf).abs(),
                       (empirical - 1 / num_samples - cdf).abs()).max()
    assert ks.item() < 1.63 / num_samples**0.5  # KS test at the 1% level


def test_sample_vmf_uniform_when_kappa_is_zero():
    gen = torch.Generator().manual_seed(4)
    p, num_samples = 5, 4000
    mu = torch.zeros(p, dtype=torch.float64)
    mu[0] = 1
    samples = sample_vmf(mu, 0.0, num_samples, generator=gen)
    assert samples.mean(0).norm().item() < 5 / (num_samples * p)**0.5
    second_moment = samples.t() @ samples / num_samples
    torch.testing.assert_close(
        second_moment,
        torch.eye(p, dtype=torch.float64) / p,
        rtol=0,
        atol=0.03)


def test_sample_vmf_reproducible_and_dtype():
    mu = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    first = sample_vmf(
        mu,
        torch.tensor([1.0, 3.0]),
        5,
        generator=torch.Generator().manual_seed(7))
    second = sample_vmf(
        mu,
        torch.tensor([1.0, 3.0]),
        5,
        generator=torch.Generator().manual_seed(7))
    assert first.dtype == torch.float32 and first.shape == (5, 2, 4)
    assert torch.equal(first, second)
    with pytest.raises(ValueError, match='num_samples'):
        sample_vmf(mu, 1.0, 0)
    with pytest.raises(ValueError, match='p must be'):
        sample_vmf(torch.ones(1), 1.0, 3)
