"""A literal ProCo implementation: the baseline of ``bench_proco_loss.py``.

This re-implements the method the way the authors' public code computes it,
written from a description of that code (docs/methods.md, section ProCo, has
the math). It is deliberately slow and is not part of ``mmlt``:

- the estimator update builds ``B x C x p`` tensors (a one-hot mask times the
  features) and keeps a running mean per class; two estimators are updated on
  every step and the loss reads the older one (last epoch + this epoch);
- ``kappa = p R / (1 - R^2)`` (the official formula);
- ``log I_v(x)`` comes from a Python loop of about ``p - 2``
  backward-recurrence steps of the ratio
  ``I_n / I_{n-1} = x / (2 n + x I_{n+1} / I_n)``, started from 0 at order
  ``p - 1``, with a NaN check (a host sync) after every step;
  the derivative ``A_p = I_{v+1} / I_v`` comes from the same loop and is
  clipped to 1;
- ``kappa~ = ||kappa mu + z / tau||`` is a norm over a ``B x C x p`` tensor.

Where a choice was open it was made in the baseline's favour (the recurrence
runs once per forward and its ratio is reused by the backward pass), so the
measured speed-ups are if anything understated.

Reference: Du et al., "Probabilistic Contrastive Learning for Long-Tailed
Visual Recognition", TPAMI 2024, arXiv 2403.06726.
"""
import math

import torch
import torch.nn.functional as F


class LiteralEstimator:
    """Running per-class mean of the features, updated with B x C x p masks.

    Args:
        num_classes (int): ``C``.
        feat_dim (int): ``p``.
        dtype (torch.dtype): dtype of the state. Defaults to float32.
    """

    def __init__(self, num_classes, feat_dim, dtype=torch.float32):
        self.num_classes = num_classes
        self.feat_dim = feat_dim
        self.mean = torch.zeros(num_classes, feat_dim, dtype=dtype)
        self.amount = torch.zeros(num_classes, dtype=dtype)

    def update(self, features, labels):
        batch_size, feat_dim = features.shape
        num_classes = self.num_classes
        one_hot = torch.zeros(batch_size, num_classes, dtype=features.dtype)
        one_hot.scatter_(1, labels.view(-1, 1), 1)
        one_hot_bcp = one_hot.view(batch_size, num_classes, 1).expand(
            batch_size, num_classes, feat_dim)
        features_by_class = features.view(batch_size, 1, feat_dim).expand(
            batch_size, num_classes, feat_dim).mul(one_hot_bcp)
        amount_cp = one_hot_bcp.sum(0)
        amount_cp[amount_cp == 0] = 1
        batch_mean = features_by_class.sum(0) / amount_cp
        batch_amount = one_hot.sum(0).view(num_classes, 1).expand(
            num_classes, feat_dim)
        weight = batch_amount.div(batch_amount + self.amount.view(
            num_classes, 1).expand(num_classes, feat_dim))
        weight[weight != weight] = 0
        self.mean = self.mean.mul(1 - weight) + batch_mean.mul(weight)
        self.amount += one_hot.sum(0)

    def parameters(self):
        """``(mu, kappa)`` with the official ``kappa = p R / (1 - R^2)``."""
        resultant = torch.linalg.vector_norm(self.mean, dim=1)
        mu = self.mean / resultant.clamp(min=1e-12)[:, None]
        resultant = resultant.clamp(max=1 - 1e-7)
        kappa = self.feat_dim * resultant / (1 - resultant**2)
        return mu, kappa


def literal_log_bessel_and_ratio(order, x):
    """``log I_order(x)`` and ``I_{order+1}(x) / I_order(x)`` by a Python loop.

    Args:
        order (float): ``v = p/2 - 1`` (an integer or a half-integer).
        x (Tensor): Arguments > 0 (float64 inside).

    Returns:
        tuple[Tensor, Tensor]: ``log I_v(x)`` and ``A = I_{v+1}/I_v``.
    """
    x = x.to(torch.float64)
    fraction = order - math.floor(order)
    top = math.floor(2 * order + 1 - fraction)  # about p - 1
    ratio = torch.zeros_like(x)  # I_{top+1} / I_top, started from 0
    log_sum = torch.zeros_like(x)
    ratio_above_order = None
    for step in range(top, 0, -1):
        n = step + fraction
        ratio = x / (2 * n + x * ratio)  # I_n / I_{n-1}
        if torch.isnan(ratio).any():  # host sync on every step
            raise FloatingPointError('NaN in the Bessel recurrence')
        if abs(n - (order + 1)) < 1e-9:
            ratio_above_order = ratio
        if n <= order + 1e-9:
            log_sum = log_sum + torch.log(ratio)
    if fraction == 0:
        log_base = torch.log(torch.special.i0e(x)) + x
    else:  # I_{1/2}(x) = sqrt(2 / (pi x)) sinh(x)
        log_base = (0.5 * torch.log(2 / (math.pi * x)) + x +
                    torch.log1p(-torch.exp(-2 * x)) - math.log(2))
    return log_base + log_sum, ratio_above_order


class LiteralLogNormalizer(torch.autograd.Function):
    """``log C_p(kappa)`` with ``d/dkappa = -min(A_p(kappa), 1)``."""

    @staticmethod
    def forward(ctx, kappa, p):
        order = p / 2 - 1
        kappa64 = kappa.to(torch.float64).clamp(min=1e-6)
        log_bessel, ratio = literal_log_bessel_and_ratio(order, kappa64)
        ctx.save_for_backward(ratio.clamp(max=1.0))
        log_c = (order * torch.log(kappa64) - p / 2 * math.log(2 * math.pi) -
                 log_bessel)
        return log_c.to(kappa.dtype)

    @staticmethod
    def backward(ctx, grad):
        ratio, = ctx.saved_tensors
        return -grad * ratio.to(grad.dtype), None


class LiteralProCo:
    """The literal loss with its two-estimator window.

    Args:
        num_classes (int): ``C``.
        feat_dim (int): ``p``.
        log_prior (Tensor): ``log(pi)``, shape ``(C,)``.
        temperature (float): ``tau``. Defaults to 0.1.
    """

    def __init__(self, num_classes, feat_dim, log_prior, temperature=0.1):
        self.feat_dim = feat_dim
        self.temperature = temperature
        self.log_prior = log_prior.float()
        self.estimator = LiteralEstimator(num_classes, feat_dim)
        self.estimator_old = LiteralEstimator(num_classes, feat_dim)

    def update(self, features, labels):
        self.estimator_old.update(features, labels)
        self.estimator.update(features, labels)

    def __call__(self, features, labels):
        """Loss of one view ``(B, p)`` (the update happens first)."""
        self.update(features.detach(), labels)
        mu, kappa = self.estimator_old.parameters()
        tau, p = self.temperature, self.feat_dim
        kappa_tilde = torch.linalg.vector_norm(
            kappa.view(1, -1, 1) * mu.unsqueeze(0) +
            features.unsqueeze(1) / tau,
            dim=2)  # B x C x p
        logits = (LiteralLogNormalizer.apply(kappa, p).unsqueeze(0) -
                  LiteralLogNormalizer.apply(kappa_tilde, p))
        return F.cross_entropy(logits + self.log_prior, labels)
