# Copyright (c) mmlt contributors. All rights reserved.
"""The von Mises-Fisher (vMF) distribution on the sphere S^{p-1}.

The density of vMF(mu, kappa) on the unit sphere of R^p is
``f(z) = C_p(kappa) exp(kappa mu.z)`` with the normaliser

    C_p(kappa) = kappa^v / ((2 pi)^{p/2} I_v(kappa)),   v = p/2 - 1,

where ``I_v`` is the modified Bessel function of the first kind
(:mod:`mmlt.models.vmf.bessel`). ProCo (Du et al., "Probabilistic
Contrastive Learning for Long-Tailed Visual Recognition", TPAMI 2024,
arXiv:2403.06726) needs ``log C_p`` and its derivative ``-A_p(kappa)``,
``A_p = I_{p/2} / I_{p/2-1}``, for every (sample, class) pair at every step.

Everything here is vectorised, runs on any device (also ``meta``), returns
the input's floating dtype and never reads a tensor value on the host. The
element-wise Bessel work is in float64; the one large product (the B x C
cosines of :func:`expected_contrast_logits`) is in float32.

Measured against mpmath on dense grids (``p`` in [2, 4096], ``x`` in
[1e-6, 1e6]): the relative error of ``A_p`` is below 1e-15; that of
``log I_v(x)`` below 1e-12 where ``|log I_v(x)| >= 1``, and its absolute
error below 2e-12 elsewhere (next to the zeros of ``log I_v``, ``v > 0``, a
relative error is meaningless; ``log I_0`` has none and keeps full relative
accuracy down to ``x = 1e-150``). docs/methods.md has the math.
"""
import warnings
from contextlib import nullcontext
from typing import Optional

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from mmlt.utils.validation import check_choice, check_int, check_number
from .bessel import (_DEBYE_MIN_ORDER, _LOG_2PI, TensorOrFloat,
                     _difference_core, _log_scaled_bessel_and_ratio, as_float64, log_bessel_iv,
                     log_scaled_bessel_difference)

__all__ = [
    'log_bessel_iv', 'log_vmf_normalizer', 'bessel_ratio', 'estimate_kappa',
    'expected_contrast_logits'
]

# Default upper clamp of estimated concentrations.
DEFAULT_MAX_KAPPA = 1e6


def _check_dimension(p) -> int:
    """``p``, the dimension of R^p."""
    return check_int('p', p, minimum=2)


# ---------------------------------------------------------------------------
# Autograd functions with exact derivatives.
# ---------------------------------------------------------------------------
class _BesselRatio(torch.autograd.Function):
    """A_p(k); d/dk = 1 - A^2 - (p - 1) A / k."""

    @staticmethod
    def forward(ctx, kappa: Tensor, p: int) -> Tensor:
        _, ratio_over_x = _log_scaled_bessel_and_ratio(
            p / 2 - 1, kappa, with_log=False)
        ratio = kappa * ratio_over_x
        ctx.save_for_backward(ratio, ratio_over_x)
        ctx.p = p
        return ratio

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        ratio, ratio_over_x = ctx.saved_tensors
        return grad * (1 - ratio * ratio - (ctx.p - 1) * ratio_over_x), None


class _LogVmfNormalizer(torch.autograd.Function):
    """log C_p(k) = -g_v(k) - (p/2) log(2 pi); d/dk = -A_p(k)."""

    @staticmethod
    def forward(ctx, kappa: Tensor, p: int) -> Tensor:
        log_scaled, ratio_over_x = _log_scaled_bessel_and_ratio(
            p / 2 - 1, kappa, with_ratio=ctx.needs_input_grad[0])
        ctx.save_for_backward(kappa, ratio_over_x)
        ctx.p = p
        return -log_scaled - p / 2 * _LOG_2PI

    @staticmethod
    def backward(ctx, grad: Tensor):
        kappa, ratio_over_x = ctx.saved_tensors
        if torch.is_grad_enabled():
            # create_graph=True: keep the derivative differentiable.
            ratio = _BesselRatio.apply(kappa, ctx.p)
        else:
            ratio = kappa * ratio_over_x
        return -grad * ratio, None


class _ExpectedContrastLogits(torch.autograd.Function):
    """ell = log C_p(kappa) - log C_p(kt) from cos = mu . z.

    kt^2 = kappa^2 + 2 kappa cos / tau + 1 / tau^2, so
    d ell / d cos = A_p(kt) kappa / (tau kt), finite at kt = 0.

    A float32 ``cos`` at p >= 52 takes the float32 difference form
    (:func:`log_scaled_bessel_difference`); float64 ``cos`` and smaller p
    (orders below Debye's range) the float64 path. The logits and the
    gradient are in ``cos``'s dtype.
    """

    @staticmethod
    def forward(ctx, cosine: Tensor, kappa: Tensor, tau: float, p: int,
                core) -> Tensor:
        order = p / 2 - 1
        need_grad = ctx.needs_input_grad[0]
        if cosine.dtype != torch.float64 and order >= _DEBYE_MIN_ORDER:
            # kt^2 - kappa^2, from the cosine directly (no cancellation).
            delta = torch.mul(cosine, (kappa * (2 / tau)).to(cosine.dtype))
            logits, ratio_over_x = log_scaled_bessel_difference(
                order, kappa, delta.add_(1 / (tau * tau)), need_grad, core)
        else:
            logits, ratio_over_x = _float64_logits(cosine, kappa, tau, order,
                                                   need_grad)
        if need_grad:
            slope = ratio_over_x.mul_((kappa / tau).to(ratio_over_x.dtype))
            ctx.save_for_backward(slope.to(cosine.dtype))
        return logits.to(cosine.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        slope, = ctx.saved_tensors
        return grad * slope, None, None, None, None


def _float64_logits(cosine: Tensor, kappa: Tensor, tau: float, order: float,
                    need_grad: bool):
    """``g_v(kt) - g_v(kappa)`` and ``q_v(kt)``, element-wise in float64."""
    kappa_tilde = cosine.to(torch.float64).mul(kappa * (2 / tau))
    kappa_tilde.add_(kappa * kappa + 1 / (tau * tau))
    # Rounding can make the radicand slightly negative when
    # kappa ~ 1/tau and z = -mu.
    kappa_tilde.clamp_(min=0).sqrt_()
    log_scaled_tilde, ratio_over_x = _log_scaled_bessel_and_ratio(
        order, kappa_tilde, with_ratio=need_grad)
    log_scaled, _ = _log_scaled_bessel_and_ratio(
        order, kappa, with_ratio=False)
    # log C_p(kappa) - log C_p(kt) = g_v(kt) - g_v(kappa).
    return log_scaled_tilde.sub_(log_scaled), ratio_over_x


# ---------------------------------------------------------------------------
# Public API.
# ---------------------------------------------------------------------------
def log_vmf_normalizer(kappa: TensorOrFloat, p: int) -> Tensor:
    """Log normaliser of the von Mises-Fisher distribution on S^{p-1}.

    ``log C_p(kappa) = v log kappa - (p/2) log(2 pi) - log I_v(kappa)``,
    ``v = p/2 - 1``. Finite and continuous at ``kappa = 0``, where it equals
    the log density of the uniform distribution,
    ``log Gamma(p/2) - log 2 - (p/2) log pi`` (an empty class is kappa = 0).
    The derivative is exact: ``d/dkappa log C_p(kappa) = -A_p(kappa)``
    (see :func:`bessel_ratio`), 0 at kappa = 0; second derivatives work too.

    Args:
        kappa (Tensor | float): Concentration, >= 0 (negative entries give
            NaN).
        p (int): Dimension of the ambient space, >= 2.

    Returns:
        Tensor: log C_p(kappa) in the floating dtype of ``kappa`` (float64
        for a number).

    Shape:
        - kappa: any shape. Output: the same shape.
    """
    p = _check_dimension(p)
    kappa64, out_dtype = as_float64(kappa, 'kappa')
    return _LogVmfNormalizer.apply(kappa64, p).to(out_dtype)


def bessel_ratio(kappa: TensorOrFloat, p: int) -> Tensor:
    """Mean resultant length of vMF(mu, kappa), A_p = I_{p/2} / I_{p/2-1}.

    Strictly inside (0, 1) for kappa > 0 (also after rounding to the output
    dtype), 0 at kappa = 0. Differentiable with the exact derivative
    ``A_p'(k) = 1 - A_p(k)^2 - (p - 1) A_p(k) / k``.

    Args:
        kappa (Tensor | float): Concentration, >= 0 (negative entries give
            NaN).
        p (int): Dimension of the ambient space, >= 2.

    Returns:
        Tensor: A_p(kappa) in the floating dtype of ``kappa``.

    Shape:
        - kappa: any shape. Output: the same shape.
    """
    p = _check_dimension(p)
    kappa64, out_dtype = as_float64(kappa, 'kappa')
    ratio = _BesselRatio.apply(kappa64, p).to(out_dtype)
    # Rounding to float32 could reach 1 for kappa >~ 1e7 (p small).
    largest_below_one = 1 - torch.finfo(out_dtype).eps / 2
    return torch.clamp(ratio, max=largest_below_one)


def estimate_kappa(r: TensorOrFloat,
                   p: int,
                   method: str = 'banerjee',
                   max_kappa: Optional[float] = None,
                   newton_steps: int = 4) -> Tensor:
    """Concentration of a vMF from the mean resultant length R of its samples.

    Methods (Banerjee et al., "Clustering on the Unit Hypersphere using von
    Mises-Fisher Distributions", JMLR 2005; Sra, Comput. Stat. 2012):

    - ``'banerjee'``: ``kappa = R (p - R^2) / (1 - R^2)``;
    - ``'official'``: ``kappa = p R / (1 - R^2)``, what the ProCo authors' code
      uses (about ``1 + R^2/p`` times larger);
    - ``'mle'``: the maximum-likelihood estimate, the root of
      ``A_p(kappa) = R``, by ``newton_steps`` Newton steps started from
      ``'banerjee'`` (``A_p'(k) = 1 - A_p^2 - (p - 1) A_p / k``).

    R = 0 gives kappa = 0; R is clamped to [0, 1] and kappa to
    [0, max_kappa], so R -> 1 gives ``max_kappa`` rather than inf or NaN.
    The estimate is a statistic: it is computed without gradient.

    Args:
        r (Tensor | float): Mean resultant length, in [0, 1).
        p (int): Dimension of the ambient space, >= 2.
        method (str): ``'banerjee'``, ``'official'`` or ``'mle'``.
            Defaults to ``'banerjee'``.
        max_kappa (float, optional): Upper clamp. Defaults to None, meaning
            ``DEFAULT_MAX_KAPPA`` (1e6).
        newton_steps (int): Newton iterations of ``'mle'``. Defaults to 4,
            enough for a relative residual below 1e-12.

    Returns:
        Tensor: kappa in the floating dtype of ``r``.

    Shape:
        - r: any shape. Output: the same shape.
    """
    p = _check_dimension(p)
    check_choice('method', method, ('banerjee', 'official', 'mle'))
    if max_kappa is None:
        max_kappa = DEFAULT_MAX_KAPPA
    check_number('max_kappa', max_kappa, strictly_above=0)
    check_int('newton_steps', newton_steps, minimum=0)
    r64, out_dtype = as_float64(r, 'r')
    r64 = r64.detach().clamp(0, 1)
    one_minus_r2 = (1 - r64) * (1 + r64)
    if method == 'official':
        kappa = p * r64 / one_minus_r2
    else:
        kappa = r64 * (p - r64 * r64) / one_minus_r2
    kappa = kappa.clamp(0, max_kappa)
    if method == 'mle':
        order = p / 2 - 1
        for _ in range(newton_steps):
            _, ratio_over_x = _log_scaled_bessel_and_ratio(
                order, kappa, with_log=False)
            ratio = kappa * ratio_over_x
            slope = 1 - ratio * ratio - (p - 1) * ratio_over_x
            # A' decreases from 1/p to ~(p-1)/(2k^2); once that drowns in the
            # rounding of 1 - A^2 (k >~ 1e6 sqrt(p)), its asymptote is used.
            slope = torch.where(slope > 1e-12, slope,
                                (p - 1) / (2 * kappa * kappa))
            kappa = (kappa - (ratio - r64) / slope).clamp(0, max_kappa)
        kappa = torch.where(r64 > 0, kappa, 0.0)
    return kappa.to(out_dtype)


class _CompiledDifferenceCore:
    """``torch.compile`` of the float32 element-wise logits, built on first
    use; if compiling or running it fails (no C++ compiler, an unsupported
    device), one warning and the eager function from then on."""

    def __init__(self):
        self.compiled = None
        self.error = None

    def __call__(self, *args):
        if self.error is None:
            try:
                if self.compiled is None:
                    self.compiled = torch.compile(
                        _difference_core, dynamic=True, fullgraph=True)
                return self.compiled(*args)
            except Exception as error:  # any backend failure: stay eager
                self.error = error
                warnings.warn(
                    'torch.compile of the ProCo logits failed '
                    f'({type(error).__name__}: {str(error)[:200]}); using the '
                    'eager path (same values, more kernels).')
        return _difference_core(*args)


_compiled_difference_core = _CompiledDifferenceCore()


def expected_contrast_logits(z: Tensor,
                             mu: Tensor,
                             kappa: Tensor,
                             tau: float,
                             compiled: bool = False) -> Tensor:
    """ProCo's closed-form expected contrastive logits (docs/methods.md).

    For infinitely many contrastive samples ``z' ~ vMF(mu_c, kappa_c)``,
    ``ell_ic = log E[exp(z_i . z' / tau)] = log C_p(kappa_c) - log C_p(kt_ic)``
    with ``kt_ic = ||kappa_c mu_c + z_i / tau||
    = sqrt(kappa_c^2 + 2 kappa_c (mu_c . z_i) / tau + 1 / tau^2)``, evaluated
    with one B x C matrix product (no B x C x p tensor). The gradient flows to
    ``z`` only (``mu`` and ``kappa`` are detached) and is exact:
    ``d ell_ic / d z_i = A_p(kt_ic) kappa_c mu_c / (tau kt_ic)``. Because the
    second form of ``kt`` uses ``||z_i|| = 1``, this differs from the gradient
    of ``||kappa_c mu_c + z_i / tau||`` by a component along ``z_i``, which the
    L2 normalisation producing ``z`` removes.

    Precision: the matrix product runs in the promoted dtype of ``z`` and
    ``mu`` (at least float32, also under autocast). For a float32 product and
    ``p >= 52`` the element-wise rest is float32 too, in the difference form
    of :func:`~mmlt.models.vmf.bessel.log_scaled_bessel_difference` (about 50
    kernels, no float64 ``B x C`` tensor; within 1e-5 nats of the float64
    reference at tau = 0.1 for kappa in [0, 1e6]); float64 inputs and
    ``p < 52`` take the float64 path (Bessel recurrences).

    Du et al., "Probabilistic Contrastive Learning for Long-Tailed Visual
    Recognition", TPAMI 2024.

    Args:
        z (Tensor): Unit feature vectors.
        mu (Tensor): Unit mean directions of the classes.
        kappa (Tensor): Concentrations of the classes, >= 0 (0 = uniform).
        tau (float): Temperature, > 0.
        compiled (bool): Run the float32 element-wise part through
            ``torch.compile`` (fused kernels; compiled once per device and
            dtype, with a warning and the eager path if compiling fails).
            Defaults to False.

    Returns:
        Tensor: The logits ell in the dtype of ``z``.

    Shape:
        - z: (B, p). mu: (C, p). kappa: (C,).
        - Output: (B, C).
    """
    if not isinstance(z, Tensor) or z.dim() != 2:
        raise ValueError(f'z must be a (B, p) tensor, got {_describe(z)}')
    if not isinstance(mu,
                      Tensor) or mu.dim() != 2 or mu.shape[1] != z.shape[1]:
        raise ValueError(
            f'mu must be a (C, p) tensor with p = {z.shape[1]} like z, got '
            f'{_describe(mu)}')
    if not isinstance(kappa, Tensor) or kappa.shape != mu.shape[:1]:
        raise ValueError(
            f'kappa must be a ({mu.shape[0]},) tensor like mu.shape[:1], got '
            f'{_describe(kappa)}')
    check_number('tau', tau, strictly_above=0)
    p = _check_dimension(z.shape[1])
    # The matmul runs in the promoted dtype of z and mu (at least float32):
    # casting a float32 (8142, 1024) mu to float64 every step would cost more
    # than the rest, and a float32 product is about as accurate as the
    # float32 output.
    matmul_dtype = torch.promote_types(
        torch.promote_types(z.dtype, mu.dtype), torch.float32)
    # Kept in float32 under autocast. The logit moves by at most
    # (cosine error) / tau: measured (p = 128 and 1024, kappa up to 1e6,
    # tau = 0.1) bf16 inputs give up to 7e-3 nats, fp16 9e-4, float32 4e-7.
    # The product is O(B C p) either way; float32 keeps the closed form exact
    # to the precision the tests check (tests/test_models/test_gpu_step.py).
    device_type = z.device.type
    no_autocast = torch.autocast(device_type, enabled=False) if \
        torch.amp.is_autocast_available(device_type) else nullcontext()
    with no_autocast:
        cosine = z.to(matmul_dtype) @ mu.detach().to(matmul_dtype).t()
    core = _compiled_difference_core if compiled else _difference_core
    logits = _ExpectedContrastLogits.apply(cosine,
                                           kappa.detach().to(torch.float64),
                                           float(tau), p, core)
    return logits.to(z.dtype if z.is_floating_point() else torch.float64)


def _describe(value) -> str:
    if isinstance(value, Tensor):
        return f'a tensor of shape {tuple(value.shape)}'
    return repr(value)
