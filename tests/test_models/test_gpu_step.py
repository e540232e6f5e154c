"""The training step as it runs on a GPU, checked on the CPU.

- Large products (B x C x p, B x B x p) run in float32 or lower, never float64
  (recorded at the aten level, so a hidden promotion is caught).
- Nothing in a step reads a tensor value on the host: no
  ``_local_scalar_dense`` (``.item()``, ``int(t)``, ``bool(t)``) and no op
  whose output size depends on values (``nonzero``, ``unique``, ...). The
  ``meta`` device, which has no values at all, runs the same steps.
- Under bfloat16 autocast (the CPU stand-in for ``--amp``) the ProCo cosine
  product stays float32: measured against float64, bf16 inputs move the
  logits by up to 7e-3 nats (p = 128, tau = 0.1), float32 by 4e-7.
"""
import pytest
import torch
import torch.nn.functional as F

from mmlt.models.losses import (BCLLoss, DecoupledContrastiveLoss,
                                InfoNCELoss, LogitAdjustLoss, ProCoLoss,
                                ProtoNCELoss, SupConLoss)
from mmlt.models.vmf import VMFEstimator, expected_contrast_logits

from op_recorder import HOST_SYNCS, OpRecorder

B, V, C, P = 6, 2, 5, 8


def batch(device='cpu', dtype=torch.float32, views=V):
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(views, B, P, generator=generator)
    labels = torch.tensor([0, 1, 1, 2, 4, 0])
    features = F.normalize(features, dim=-1).to(device, dtype)
    return features.requires_grad_(True), labels.to(device)


def counts():
    return [40, 20, 10, 5, 2]


def losses():
    """Each loss and how to call it on view-major features."""
    prototypes = F.normalize(torch.randn(C, P), dim=1)
    protonce = ProtoNCELoss(num_clusters=(3, ))
    protonce.set_prototypes([F.normalize(torch.randn(3, P), dim=1)],
                            [torch.full((3, ), 0.2)],
                            [torch.tensor([0, 1, 2, 0, 1, 2])])
    return {
        'proco': (ProCoLoss(C, P, class_counts=counts()),
                  lambda loss, f, y: loss(f, y)),
        'supcon': (SupConLoss(), lambda loss, f, y: loss(f, y)),
        'bcl': (BCLLoss(), lambda loss, f, y: loss(
            f, y, prototypes=prototypes.to(f.device, f.dtype))),
        'logit_adjust': (LogitAdjustLoss(counts()),
                         lambda loss, f, y: loss(f[0][:, :C], y)),
        'infonce': (InfoNCELoss(), lambda loss, f, y: loss(f[0], f[1])),
        'dcl': (DecoupledContrastiveLoss(), lambda loss, f, y: loss(f[0], f[1])),
        'protonce': (protonce, lambda loss, f, y: loss(f[0], torch.arange(
            B, device=f.device))),
    }


@pytest.mark.parametrize('name', sorted(losses()))
def test_step_has_float32_products_and_no_host_sync(name):
    loss_module, call = losses()[name]
    features, labels = batch()
    recorder = OpRecorder()
    with recorder:
        loss = call(loss_module, features, labels)
        loss.backward()
    assert torch.isfinite(loss)
    # bincount sizes its output from the largest value (without minlength)
    assert not recorder.ops & (HOST_SYNCS | {'bincount'}), \
        recorder.ops & (HOST_SYNCS | {'bincount'})
    if name != 'logit_adjust':  # element-wise only
        assert recorder.product_dtypes, 'no matrix product recorded'
    for dtypes in recorder.product_dtypes:
        assert set(dtypes) == {torch.float32}, (name, dtypes)


@pytest.mark.parametrize('name', sorted(losses()))
def test_step_runs_on_the_meta_device(name):
    """No values exist on ``meta``: any host read would raise."""
    loss_module, call = losses()[name]
    loss_module.to('meta')
    features, labels = batch('meta')
    loss = call(loss_module, features, labels)
    assert loss.device.type == 'meta' and loss.dim() == 0
    loss.backward()
    assert features.grad.shape == features.shape


def test_estimator_update_has_no_host_sync_and_runs_on_meta():
    estimator = VMFEstimator(C, P)
    features, labels = batch(views=1)
    recorder = OpRecorder()
    with recorder:
        estimator.update(features[0].detach(), labels)
        mu, kappa = estimator.vmf_parameters(torch.float32)
    assert not recorder.ops & HOST_SYNCS, recorder.ops & HOST_SYNCS
    assert mu.dtype == torch.float32 and kappa.dtype == torch.float64
    meta = VMFEstimator(C, P, window='ema').to('meta')
    meta.update(features[0].detach().to('meta'), labels.to('meta'))
    assert meta.vmf_parameters(torch.float32)[0].device.type == 'meta'


def test_proco_product_stays_float32_under_bf16_autocast():
    """The cosine product is kept out of autocast (see the next test for the
    error it avoids)."""
    loss_module = ProCoLoss(C, P, class_counts=counts())
    features, labels = batch()
    recorder = OpRecorder()
    with torch.autocast('cpu', dtype=torch.bfloat16), recorder:
        loss = loss_module(features.to(torch.bfloat16), labels)
    assert torch.isfinite(loss)
    assert recorder.product_dtypes
    for dtypes in recorder.product_dtypes:
        assert set(dtypes) == {torch.float32}, dtypes


def test_bf16_cosine_error_would_be_large_and_float32_is_not():
    """The measured error of the expected logits, in one place: float32 vs a
    float64 reference, and what a bf16 product would give."""
    generator = torch.Generator().manual_seed(1)
    z = F.normalize(torch.randn(64, 128, generator=generator), dim=1)
    mu = F.normalize(torch.randn(10, 128, generator=generator), dim=1)
    kappa = torch.linspace(10, 2000, 10, dtype=torch.float64)
    reference = expected_contrast_logits(z.double(), mu.double(), kappa, 0.1)
    float32 = expected_contrast_logits(z, mu, kappa, 0.1)
    error32 = (float32.double() - reference).abs().max().item()
    # What a bf16 matmul would do: round the inputs to bf16.
    bf16 = expected_contrast_logits(
        z.bfloat16().float(), mu.bfloat16().float(), kappa, 0.1)
    error_bf16 = (bf16.double() - reference).abs().max().item()
    assert error32 < 1e-5
    # bf16 rounding: ~4e-3 here (bounded by the cosine error / tau).
    assert 1e-3 < error_bf16 < 5e-2
    # And under autocast the float32 result is what comes out.
    with torch.autocast('cpu', dtype=torch.bfloat16):
        autocast = expected_contrast_logits(z, mu, kappa, 0.1)
    torch.testing.assert_close(autocast, float32)


def test_non_finite_step_gives_non_finite_loss_not_an_exception():
    """An fp16 overflow is the optimizer wrapper's to skip (GradScaler), so
    every loss returns a non-finite value instead of raising."""
    for name, (loss_module, call) in losses().items():
        features, labels = batch()
        bad = features.detach().clone()
        bad[0, 1, 2] = float('inf')
        loss = call(loss_module, bad, labels)
        assert not torch.isfinite(loss), name
