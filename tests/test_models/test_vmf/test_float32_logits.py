# Copyright (c) mmlt contributors. All rights reserved.
"""The float32 path of ProCo's expected logits (p >= 52) against float64.

References: mpmath values of log I_v computed in the test, the float64 path
(itself checked against mpmath literals in test_vmf.py) and a float64
gradient. The issue's criterion: logits within 1e-4 nats of the float64
reference for kappa from 0 to 1e6 and p from 2 to 4096.
"""
import warnings

import mpmath
import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from mmlt.models.losses import ProCoLoss
from mmlt.models.vmf import expected_contrast_logits
from mmlt.models.vmf import vmf as vmf_module
from mmlt.models.vmf.bessel import log_scaled_bessel_difference

KAPPAS = [0.0, 1e-6, 1e-3, 0.1, 1.0, 5.0, 9.99, 10.0, 10.01, 20.0, 50.0,
          100.0, 1e3, 1e4, 1e5, 1e6]


def _mpmath_difference(order, x0, x1):
    """g_v(x1) - g_v(x0), g_v(x) = log I_v(x) - v log x, at 40 digits."""
    mpmath.mp.dps = 40
    v = mpmath.mpf(order)

    def g(x):
        x = mpmath.mpf(x)
        if x == 0:  # the limit: -v log 2 - log Gamma(v + 1)
            return -v * mpmath.log(2) - mpmath.loggamma(v + 1)
        return mpmath.log(mpmath.besseli(v, x)) - v * mpmath.log(x)

    return float(g(x1) - g(x0))


@pytest.mark.parametrize('order,x0,delta', [
    (25.0, 0.0, 100.0),
    (25.0, 10.0, -100.0 + 1e-3),  # x1 ~ 0 (kappa = 1/tau, z = -mu)
    (63.0, 37.5, 520.0),
    (511.0, 1000.0, 20100.0),
    (511.0, 1e6, -2e7 + 100.0),
    (2047.0, 3.0, 160.0),
])
def test_difference_against_mpmath(order, x0, delta):
    got, _ = log_scaled_bessel_difference(
        order, torch.tensor([x0], dtype=torch.float64),
        torch.tensor([[delta]], dtype=torch.float32))
    # The same float32 delta, so only the difference's own error counts.
    x1 = (x0 * x0 + float(torch.tensor(delta, dtype=torch.float32)))**0.5
    expected = _mpmath_difference(order, x0, x1)
    assert got.dtype == torch.float32
    assert abs(float(got) - expected) < 2e-6, (float(got), expected)


def _unit(*shape, generator, dtype=torch.float64):
    return F.normalize(
        torch.randn(*shape, generator=generator, dtype=dtype), dim=-1)


def _batch(p, generator):
    """z (40, p), mu (len(KAPPAS) * 2, p) with z = mu and z = -mu pairs."""
    z = _unit(40, p, generator=generator)
    mu = _unit(2 * len(KAPPAS), p, generator=generator)
    mu[:5] = z[:5]
    mu[5:10] = -z[5:10]
    kappa = torch.tensor(KAPPAS * 2, dtype=torch.float64)
    return z, mu, kappa


@pytest.mark.parametrize('p', [2, 3, 16, 51, 52, 53, 128, 1024, 2048, 4096])
@pytest.mark.parametrize('tau', [0.05, 0.1])
def test_float32_logits_within_1e4_nats_of_float64(p, tau):
    generator = torch.Generator().manual_seed(p)
    z, mu, kappa = _batch(p, generator)
    reference = expected_contrast_logits(z, mu, kappa, tau)
    z32 = z.float().requires_grad_()
    logits = expected_contrast_logits(z32, mu.float(), kappa, tau)
    assert logits.dtype == torch.float32
    error = (logits.double() - reference).abs().max().item()
    # Measured: below 5e-6 (float32 cosine rounding included).
    assert error < 1e-4, error
    # The gradient: float64 reference, same upstream gradient.
    upstream = torch.randn(reference.shape, generator=generator,
                           dtype=torch.float64)
    logits.backward(upstream.float())
    z64 = z.clone().requires_grad_()
    expected_contrast_logits(z64, mu, kappa, tau).backward(upstream)
    torch.testing.assert_close(z32.grad.double(), z64.grad, rtol=1e-4,
                               atol=1e-4 * z64.grad.abs().max().item())


class _OutputRecorder(TorchDispatchMode):
    """(op, dtype, numel) of every tensor an op returns."""

    def __init__(self):
        super().__init__()
        self.outputs = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for value in (out if isinstance(out, (tuple, list)) else (out, )):
            if isinstance(value, torch.Tensor):
                self.outputs.append((func.overloadpacket.__name__,
                                     value.dtype, value.numel()))
        return out


@pytest.mark.parametrize('p,float64_bxc', [(128, False), (16, True)])
def test_no_float64_batch_by_class_tensor_from_p_52(p, float64_bxc):
    """p >= 52: every B x C tensor of forward and backward is float32;
    below, the float64 path (Bessel recurrences) is used on purpose."""
    generator = torch.Generator().manual_seed(0)
    num_samples, num_classes = 7, 11
    z = _unit(num_samples, p, generator=generator,
              dtype=torch.float32).requires_grad_()
    mu = _unit(num_classes, p, generator=generator, dtype=torch.float32)
    kappa = torch.linspace(0, 500, num_classes, dtype=torch.float64)
    recorder = _OutputRecorder()
    with recorder:
        expected_contrast_logits(z, mu, kappa, 0.1).sum().backward()
    large = [(op, dtype) for op, dtype, numel in recorder.outputs
             if numel >= num_samples * num_classes]
    assert large
    has_float64 = any(dtype == torch.float64 for _, dtype in large)
    assert has_float64 == float64_bxc, large


def test_compiled_path_matches_eager_and_falls_back(monkeypatch):
    generator = torch.Generator().manual_seed(3)
    z, mu, kappa = _batch(256, generator)
    z32 = z.float().requires_grad_()
    eager = expected_contrast_logits(z32, mu.float(), kappa, 0.1)

    def failing_compile(*args, **kwargs):
        def run(*args):
            raise RuntimeError('no C++ compiler (simulated)')
        return run

    # A fresh compiled core whose torch.compile fails: one warning, then
    # the eager values.
    core = vmf_module._CompiledDifferenceCore()
    monkeypatch.setattr(vmf_module, '_compiled_difference_core', core)
    monkeypatch.setattr(torch, 'compile', failing_compile)
    with pytest.warns(UserWarning, match='no C.. compiler .simulated.'):
        fallback = expected_contrast_logits(z32, mu.float(), kappa, 0.1,
                                            compiled=True)
    assert isinstance(core.error, RuntimeError)
    torch.testing.assert_close(fallback, eager, rtol=0, atol=0)
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # warned once, not every step
        expected_contrast_logits(z32, mu.float(), kappa, 0.1, compiled=True)


@pytest.mark.slow
def test_compiled_path_on_the_cpu_backend():
    """torch.compile (inductor, CPU) gives the eager values; ProCoLoss's
    ``compile_logits`` goes through it (about 10 s of compiling)."""
    generator = torch.Generator().manual_seed(4)
    z, mu, kappa = _batch(256, generator)
    z32 = z.float().requires_grad_()
    eager = expected_contrast_logits(z32, mu.float(), kappa, 0.1)
    eager.sum().backward()
    eager_grad, z32.grad = z32.grad, None
    with warnings.catch_warnings():
        warnings.simplefilter('error', UserWarning)  # no fallback
        compiled = expected_contrast_logits(z32, mu.float(), kappa, 0.1,
                                            compiled=True)
    compiled.sum().backward()
    assert vmf_module._compiled_difference_core.error is None
    torch.testing.assert_close(compiled, eager, rtol=0, atol=2e-6)
    torch.testing.assert_close(z32.grad, eager_grad, rtol=1e-5, atol=1e-6)

    labels = torch.arange(8) % 4
    counts = [5.0, 3.0, 2.0, 1.0]
    losses = []
    for compile_logits in (False, True):
        torch.manual_seed(0)
        loss = ProCoLoss(4, 256, class_counts=counts,
                         compile_logits=compile_logits)
        losses.append(loss(z[:8].float(), labels))
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-6, atol=1e-6)
