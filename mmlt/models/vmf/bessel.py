"""Modified Bessel functions of the first kind, for the vMF distribution.

All Bessel quantities of :mod:`mmlt.models.vmf.vmf` come from one routine
returning ``g_v(x) = log I_v(x) - v log x`` and ``q_v(x) = A_v(x) / x`` with
``A_v = I_{v+1} / I_v`` (both finite at ``x = 0``), built from:

* Debye's uniform asymptotic expansion of ``I_v(v z)`` and of its derivative
  (DLMF 10.41.3, 10.41.4, 10.41.10, 10.41.11) for orders ``v >= 25``,
  uniformly valid in ``z``; the number of terms is chosen from the order so
  that the truncation error is below 1e-17;
* for smaller orders, the same expansion at order ``v + n`` (``n`` a fixed
  number of steps) followed by the backward recurrence of the ratio
  ``I_{m+1}/I_m = x / (2 (m + 1) + x I_{m+2}/I_{m+1})``, the stable
  direction for this minimal solution;
* the power series of ``I_v`` for ``x <= 2`` and ``v < 25``, so that
  ``log I_0(x) ~ x^2/4`` keeps its relative accuracy for tiny ``x``.

One order per call (a Python number), vectorised over ``x``; float64 inside;
any device (also ``meta``); no tensor value is read on the host (regimes
are selected with ``torch.where``; only the order picks code paths).
docs/methods.md has the derivation and the accuracy measured against mpmath.
"""
import math
from fractions import Fraction
from functools import lru_cache
from numbers import Real
from typing import List, Optional, Tuple, Union

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from mmlt.utils.validation import check_number

TensorOrFloat = Union[Tensor, float]

# Orders at least this large are computed directly with Debye's expansion;
# smaller orders are shifted up to it with the ratio recurrence.
_DEBYE_MIN_ORDER = 25
# With u_0..u_14 the truncation error at order 25 is below 1e-17.
_DEBYE_MAX_TERMS = 15
# Target truncation error of the Debye series (relative to 1).
_DEBYE_TOLERANCE = 1e-17
# The same for the float32 difference of g (its rounding is ~1e-7 absolute).
_DEBYE_FLOAT32_TOLERANCE = 1e-8
# Below this argument small orders use the power series of I_v.
_SERIES_MAX_ARG = 2.0
# Terms of that power series: 1 / (j!)^2 < 1e-22 for j = 14.
_SERIES_TERMS = 14
# The shift recurrence multiplies this many denominators before taking one log
# (each is at most 2 * 50 + x, so the product stays finite for x < 1e70).
_RECURRENCE_LOG_EVERY = 4
_LOG_2PI = math.log(2 * math.pi)


# ---------------------------------------------------------------------------
# Debye polynomials, built once from their exact recurrence.
# ---------------------------------------------------------------------------
def _poly_derivative(coeffs: List[Fraction]) -> List[Fraction]:
    return [i * coeffs[i] for i in range(1, len(coeffs))] or [Fraction(0)]


def _poly_mul(a: List[Fraction], b: List[Fraction]) -> List[Fraction]:
    out = [Fraction(0)] * (len(a) + len(b) - 1)
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            out[i + j] += x * y
    return out


def _poly_add(a: List[Fraction], b: List[Fraction]) -> List[Fraction]:
    size = max(len(a), len(b))
    a = a + [Fraction(0)] * (size - len(a))
    b = b + [Fraction(0)] * (size - len(b))
    return [x + y for x, y in zip(a, b)]


def _build_debye_polynomials(
        num_terms: int) -> Tuple[List[List[Fraction]], List[List[Fraction]]]:
    """Exact coefficients (lowest degree first) of u_k(t) and y_k(t).

    u_{k+1}(t) = t^2 (1 - t^2) u_k'(t) / 2 + 1/8 int_0^t (1 - 5 s^2) u_k(s) ds
    (DLMF 10.41.10). The derivative polynomials satisfy
    v_k = u_k - (1 - t^2) y_k with y_k(t) = t (u_{k-1}(t) / 2 + t u_{k-1}'(t))
    (DLMF 10.41.11); y_0 = 0.
    """
    u_polys = [[Fraction(1)]]
    for _ in range(num_terms - 1):
        u = u_polys[-1]
        first = _poly_mul(
            [0, 0, Fraction(1, 2), 0, Fraction(-1, 2)], _poly_derivative(u))
        integrand = _poly_mul([Fraction(1), 0, Fraction(-5)], u)
        second = [Fraction(0)
                  ] + [c / (8 * (i + 1)) for i, c in enumerate(integrand)]
        u_polys.append(_poly_add(first, second))
    y_polys = [[Fraction(0)]]
    for k in range(1, num_terms):
        u = u_polys[k - 1]
        inner = _poly_add([c / 2 for c in u],
                          _poly_mul([0, Fraction(1)], _poly_derivative(u)))
        y_polys.append(_poly_mul([0, Fraction(1)], inner))
    return u_polys, y_polys


_U_POLYS, _Y_POLYS = _build_debye_polynomials(_DEBYE_MAX_TERMS)


def _sup_on_unit_interval(coeffs: List[Fraction]) -> float:
    grid = torch.linspace(0, 1, 2049, dtype=torch.float64)
    values = torch.zeros_like(grid)
    for c in reversed(coeffs):
        values = values * grid + float(c)
    return float(values.abs().max())


# sup over t in [0, 1] of |u_k| and |y_k|: bounds the k-th term of both series.
_TERM_BOUNDS = [
    max(_sup_on_unit_interval(u), _sup_on_unit_interval(y))
    for u, y in zip(_U_POLYS, _Y_POLYS)
]


def _num_debye_terms(order: float,
                     tolerance: float = _DEBYE_TOLERANCE) -> int:
    """Smallest K with sup|u_K|, sup|y_K| < tolerance * order^K."""
    for k in range(1, _DEBYE_MAX_TERMS):
        if _TERM_BOUNDS[k] <= tolerance * order**k:
            return k
    return _DEBYE_MAX_TERMS


@lru_cache(maxsize=64)
def _combined_debye_coefficients(
        order: float, num_terms: int) -> Tuple[List[float], List[float]]:
    """Coefficients in t of U(t) - 1 and Y(t) for one scalar order.

    U(t) = sum_{k<K} u_k(t) order^-k and Y(t) = sum_{1<=k<K} y_k(t) order^-k,
    summed exactly in rationals, then rounded once.
    """
    inv = 1 / Fraction(order)
    u_sum: List[Fraction] = [Fraction(0)]
    y_sum: List[Fraction] = [Fraction(0)]
    for k in range(1, num_terms):
        scale = inv**k
        u_sum = _poly_add(u_sum, [c * scale for c in _U_POLYS[k]])
        y_sum = _poly_add(y_sum, [c * scale for c in _Y_POLYS[k]])
    return [float(c) for c in u_sum], [float(c) for c in y_sum]


def _horner(coeffs: List[float], t: Tensor) -> Tensor:
    out = torch.full_like(t, coeffs[-1])
    for c in reversed(coeffs[:-1]):
        out = out.mul_(t).add_(c)
    return out


def _debye_sums(
        order: float,
        t: Tensor,
        with_ratio: bool,
        tolerance: float = _DEBYE_TOLERANCE) -> Tuple[Tensor, Optional[Tensor]]:
    """U(t) - 1 and Y(t) at one order, truncated below ``tolerance``."""
    u_coeffs, y_coeffs = _combined_debye_coefficients(
        order, _num_debye_terms(order, tolerance))
    u_minus_one = _horner(u_coeffs, t)
    y_sum = _horner(y_coeffs, t) if with_ratio else None
    return u_minus_one, y_sum


def _debye(order: float, x: Tensor, with_log: bool,
           with_ratio: bool) -> Tuple[Optional[Tensor], Optional[Tensor]]:
    """g_v(x) and q_v(x) from Debye's expansion of I_v(v z), z = x / v.

    log I_v(v z) = v eta - log(2 pi v) / 2 - log(1 + z^2) / 4 + log U(t), with
    t = 1 / sqrt(1 + z^2), eta = sqrt(1 + z^2) + log(z / (1 + sqrt(1 + z^2))).
    Writing I_{v+1} = I_v' - (v / x) I_v and the derivative expansion as
    V = U - (1 - t^2) Y gives A = z t (1 / (1 + t) - Y / U), free of
    cancellation.
    """
    # In-place arithmetic on fresh buffers: on CPU, allocating each
    # intermediate of a [32, 8142] batch costs more than the arithmetic.
    s = torch.mul(x, x).div_(order * order).add_(1).sqrt_()  # sqrt(1 + z^2)
    t = torch.reciprocal(s)
    u_minus_one, y_sum = _debye_sums(order, t, with_ratio)
    log_scaled = None
    if with_log:
        log_order = math.log(order)
        constant = -order * log_order - 0.5 * (_LOG_2PI + log_order)
        log_scaled = torch.log1p(s).sub_(s).mul_(-order)
        log_scaled.add_(constant).sub_(s.log_().mul_(0.5))
        log_scaled.add_(torch.log1p(u_minus_one))
    ratio_over_x = None
    if with_ratio:
        y_sum.div_(u_minus_one.add_(1))
        ratio_over_x = torch.add(t, 1).reciprocal_().sub_(y_sum).mul_(t)
        ratio_over_x.div_(order)
    return log_scaled, ratio_over_x


def _series_log_scaled(order: float, x: Tensor) -> Tensor:
    """Power series of g_v(x) = log I_v(x) - v log x.

    g_v(x) = -v log 2 - log Gamma(v + 1)
             + log1p(sum_{j>=1} (x^2/4)^j / (j! (v+1)_j)).
    """
    quarter_x2 = x * x / 4
    term = torch.ones_like(x)
    total = torch.zeros_like(x)
    for j in range(1, _SERIES_TERMS + 1):
        term = term * quarter_x2 / (j * (order + j))
        total = total + term
    head = -order * math.log(2) - math.lgamma(order + 1)
    return head + torch.log1p(total)


def _log_scaled_bessel_and_ratio(
        order: float,
        x: Tensor,
        with_log: bool = True,
        with_ratio: bool = True) -> Tuple[Optional[Tensor], Optional[Tensor]]:
    """g_v(x) = log I_v(x) - v log x and q_v(x) = I_{v+1}(x) / (x I_v(x)).

    Args:
        order (float): v >= 0.
        x (Tensor): float64 arguments >= 0 (negative ones give NaN).
        with_log (bool): compute g. Defaults to True.
        with_ratio (bool): compute q. Defaults to True.

    Returns:
        tuple[Tensor | None, Tensor | None]: g and q, shaped like ``x``.
    """
    # Orders below Debye's range are shifted up and recurred back down.
    shift = max(0, math.ceil(_DEBYE_MIN_ORDER - order))
    start = order + shift
    # Ratios are needed by the recurrence even when only g is asked for.
    need_ratio = with_ratio or shift > 0
    log_scaled, ratio_over_x = _debye(start, x, with_log, need_ratio)

    if shift > 0:
        # g_v = g_{v+n} + sum_m log(2 (m + 1) + x A_{m+1}) and
        # A_m / x = 1 / (2 (m + 1) + x A_{m+1}).
        ratio = x * ratio_over_x
        product = torch.ones_like(x)
        log_sum = torch.zeros_like(x)
        for k in range(shift - 1, -1, -1):
            denominator = 2 * (order + k + 1) + x * ratio
            ratio = x / denominator
            product = product * denominator
            if k % _RECURRENCE_LOG_EVERY == 0:
                log_sum = log_sum + torch.log(product)
                product = torch.ones_like(x)
            if k == 0:
                last_denominator = denominator
        if with_ratio:
            ratio_over_x = 1 / last_denominator
        if with_log:
            log_scaled = log_scaled + log_sum
            series = _series_log_scaled(order, x)
            log_scaled = torch.where(x <= _SERIES_MAX_ARG, series, log_scaled)

    invalid = x < 0
    if log_scaled is not None:
        log_scaled.masked_fill_(invalid, math.nan)
    if ratio_over_x is not None:
        ratio_over_x.masked_fill_(invalid, math.nan)
    return log_scaled, (ratio_over_x if with_ratio else None)


# ---------------------------------------------------------------------------
# Float32 differences g_v(x1) - g_v(x0) for large orders (the ProCo logits).
# ---------------------------------------------------------------------------
def _difference_core(delta: Tensor, rows: Tuple[Tensor, ...], order: float,
                     u_coeffs: List[float], y_coeffs: Optional[List[float]]
                     ) -> Tuple[Tensor, Optional[Tensor]]:
    """Element-wise part of :func:`log_scaled_bessel_difference`.

    Only tensor arithmetic on ``delta``'s dtype and the broadcast per-class
    ``rows = (s0^2, s0, 1 / (1 + s0), 1 / s0, log U(1 / s0))``, so that
    ``torch.compile`` can fuse it into one kernel. In place where possible:
    on a CPU, allocating ``B x C`` buffers costs more than the arithmetic.
    """
    s0_squared, s0, inv_one_plus_s0, inv_s0, log_u0 = rows
    w = torch.mul(delta, 1 / (order * order))  # s1^2 - s0^2
    # Rounding may take s1^2 just below 1 where x1 ~ 0.
    s1 = torch.add(w, s0_squared).clamp_(min=1).sqrt_()
    d = torch.add(s1, s0).reciprocal_().mul_(w)  # s1 - s0, no cancellation
    out = torch.mul(d, inv_one_plus_s0).log1p_()  # log((1 + s1) / (1 + s0))
    out = torch.sub(d, out).mul_(order)
    out.sub_(torch.mul(d, inv_s0).log1p_(), alpha=0.5)  # log(s1 / s0) / 2
    t1 = s1.reciprocal_()
    u1_minus_one = _horner(u_coeffs, t1)
    out.add_(torch.log1p(u1_minus_one)).sub_(log_u0)
    if y_coeffs is None:
        return out, None
    y_over_u = _horner(y_coeffs, t1).div_(u1_minus_one.add_(1))
    ratio_over_x = torch.add(t1, 1).reciprocal_().sub_(y_over_u).mul_(t1)
    return out, ratio_over_x.mul_(1 / order)


def log_scaled_bessel_difference(
        order: float,
        x0: Tensor,
        delta: Tensor,
        with_ratio: bool = True,
        core=_difference_core) -> Tuple[Tensor, Optional[Tensor]]:
    """``g_v(x1) - g_v(x0)`` and ``q_v(x1)`` in ``delta``'s dtype, float32.

    ``x1 = sqrt(x0^2 + delta)``, ``g_v(x) = log I_v(x) - v log x`` and
    ``q_v(x) = I_{v+1}(x) / (x I_v(x))`` as in
    :func:`_log_scaled_bessel_and_ratio`, for orders ``v >= 25`` (Debye's
    expansion, no recurrence). With ``s = sqrt(1 + (x / v)^2)``,

        g_v(x1) - g_v(x0) = v (d - log(1 + d / (1 + s0))) - log(1 + d / s0) / 2
                            + log U(1 / s1) - log U(1 / s0),

    ``d = s1 - s0 = (delta / v^2) / (s1 + s0)``. ``d`` is formed from
    ``delta`` without cancellation and every term is bounded by
    ``|x1 - x0|`` (``g_v' = A_v`` lies in [0, 1)), so float32 rounding gives
    an absolute error of a few ulps of ``|x1 - x0|``, whatever the size of
    ``x0`` and ``x1`` (their float32 ``g_v`` would be off by ``1e-7 x0``).
    The series is truncated below ``_DEBYE_FLOAT32_TOLERANCE``. The per-class
    terms are float64.

    Args:
        order (float): v >= 25.
        x0 (Tensor): float64 ``(C,)``, >= 0.
        delta (Tensor): ``x1^2 - x0^2`` ``(..., C)``, floating; entries with
            ``x0^2 + delta < 0`` (rounding) are taken as ``x1 = 0``.
        with_ratio (bool): Also return ``q_v(x1)``. Defaults to True.
        core (callable): The element-wise part (``_difference_core`` or its
            compiled version). Defaults to ``_difference_core``.

    Returns:
        tuple[Tensor, Tensor | None]: The difference and ``q_v(x1)``, shaped
        and typed like ``delta``.
    """
    if order < _DEBYE_MIN_ORDER:
        raise ValueError(f'order must be >= {_DEBYE_MIN_ORDER}, got {order}')
    num_terms = _num_debye_terms(order, _DEBYE_FLOAT32_TOLERANCE)
    u_coeffs, y_coeffs = _combined_debye_coefficients(order, num_terms)
    s0_squared = torch.mul(x0, x0).div_(order * order).add_(1)
    s0 = s0_squared.sqrt()
    u0_minus_one = _horner(u_coeffs, s0.reciprocal())
    rows = tuple(
        row.to(delta.dtype) for row in (s0_squared, s0, 1 / (1 + s0),
                                        s0.reciprocal(), u0_minus_one.log1p()))
    return core(delta, rows, order, u_coeffs,
                y_coeffs if with_ratio else None)


# ---------------------------------------------------------------------------
# Inputs, log I_v and its exact derivative.
# ---------------------------------------------------------------------------
def as_float64(value: TensorOrFloat,
               name: str,
               device=None) -> Tuple[Tensor, torch.dtype]:
    """Float64 copy of ``value`` and the floating dtype of the results."""
    if isinstance(value, Tensor):
        out_dtype = (
            value.dtype
            if value.is_floating_point() else torch.get_default_dtype())
        return value.to(torch.float64), out_dtype
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ValueError(
            f'{name} must be a tensor or a real number, got {value!r}')
    if not value >= 0:
        raise ValueError(f'{name} must be >= 0, got {value!r}')
    return torch.tensor(
        float(value), dtype=torch.float64, device=device), torch.float64


class _LogBesselIv(torch.autograd.Function):
    """log I_v(x); d/dx = A_v(x) + v / x."""

    @staticmethod
    def forward(ctx, x: Tensor, order: float) -> Tensor:
        log_scaled, ratio_over_x = _log_scaled_bessel_and_ratio(
            order, x, with_ratio=ctx.needs_input_grad[0])
        power = order * torch.log(x) if order != 0 else 0.0
        ctx.save_for_backward(x, ratio_over_x)
        ctx.order = order
        return log_scaled + power

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        x, ratio_over_x = ctx.saved_tensors
        order = ctx.order
        derivative = x * ratio_over_x
        if order != 0:
            derivative = derivative + order / x
        grad_x = grad * derivative
        if grad_x.shape != x.shape:
            grad_x = grad_x.sum_to_size(x.shape)
        return grad_x, None


def log_bessel_iv(nu: float, x: TensorOrFloat) -> Tensor:
    """Log of the modified Bessel function of the first kind, log I_nu(x).

    For nu in [0, 2047] and x in [1e-6, 1e6] the relative error is below 1e-12
    where ``|log I_nu(x)| >= 1`` and the absolute error below 2e-12 elsewhere;
    see the module docstring for the method.
    Differentiable in ``x`` with the exact derivative ``I_{nu+1}/I_nu + nu/x``;
    not differentiable in ``nu``.

    Args:
        nu (float): Order, >= 0 (one order per call).
        x (Tensor | float): Argument, >= 0. ``log I_0(0) = 0`` and
            ``log I_nu(0) = -inf`` for nu > 0.

    Returns:
        Tensor: log I_nu(x) in the floating dtype of ``x`` (float64 for a
        number), shaped like ``x``. Negative entries give NaN.
    """
    check_number('nu', nu, minimum=0, finite=False)
    x64, out_dtype = as_float64(x, 'x')
    return _LogBesselIv.apply(x64, float(nu)).to(out_dtype)
