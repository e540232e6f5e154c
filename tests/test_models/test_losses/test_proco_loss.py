import io
import math

import pytest
import torch
import torch.nn.functional as F

from mmlt.models.losses import ProCoLoss
from mmlt.models.vmf import VMFEstimator
from mmlt.models.vmf.vmf import estimate_kappa, log_vmf_normalizer
from mmlt.registry import MODELS

NUM_CLASSES, FEAT_DIM, TAU = 5, 6, 0.1
CLASS_COUNTS = [50., 20., 9., 4., 2.]


def unit_features(*shape, seed=0, dtype=torch.float64):
    generator = torch.Generator().manual_seed(seed)
    return F.normalize(
        torch.randn(*shape, generator=generator, dtype=dtype), dim=-1)


def class_batch(batch_size, seed, views=None):
    """Labels and features clustered around per-class directions."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, NUM_CLASSES, (batch_size, ), generator=generator)
    centers = torch.randn(NUM_CLASSES, FEAT_DIM, generator=generator,
                          dtype=torch.float64) * 1.5
    shape = (batch_size, FEAT_DIM) if views is None else (batch_size, views,
                                                          FEAT_DIM)
    noise = torch.randn(*shape, generator=generator, dtype=torch.float64)
    centers = centers[labels] if views is None else centers[labels][:, None]
    return F.normalize(centers + noise, dim=-1), labels


def naive_vmf(seen_features, seen_labels, p=FEAT_DIM):
    """mu and kappa ('banerjee') of all samples seen so far, by a loop."""
    mu = torch.zeros(NUM_CLASSES, p, dtype=torch.float64)
    kappa = torch.zeros(NUM_CLASSES, dtype=torch.float64)
    for c in range(NUM_CLASSES):
        rows = seen_features[seen_labels == c]
        if len(rows):
            mean = rows.sum(0) / len(rows)
            mu[c] = mean / mean.norm()
            kappa[c] = estimate_kappa(mean.norm().item(), p)
    return mu, kappa


def naive_view_losses(features, labels, mu, kappa, tau=TAU,
                      counts=CLASS_COUNTS):
    """Per-sample ProCo loss with a B x C x p tensor for kappa~."""
    p = features.shape[-1]
    kappa_tilde = torch.linalg.vector_norm(
        kappa[None, :, None] * mu[None] + features[:, None, :] / tau, dim=-1)
    logits = log_vmf_normalizer(kappa, p)[None] - log_vmf_normalizer(
        kappa_tilde, p)
    prior = torch.tensor(counts, dtype=torch.float64)
    logits = logits + torch.log(prior / prior.sum())
    return -logits.log_softmax(dim=1)[torch.arange(len(labels)), labels]


def make_loss(**kwargs):
    kwargs.setdefault('class_counts', CLASS_COUNTS)
    return ProCoLoss(NUM_CLASSES, FEAT_DIM, temperature=TAU, **kwargs)


def off_sphere(features, seed):
    """Rows scaled off the sphere: gradients are compared through
    ``F.normalize`` (as in training), since the closed form assumes
    ``||z|| = 1`` and only the tangential part of the gradient is defined."""
    generator = torch.Generator().manual_seed(seed)
    scale = torch.rand(*features.shape[:-1], 1, generator=generator,
                       dtype=features.dtype) + 0.5
    return (features * scale).requires_grad_(True)


def test_matches_naive_loss_and_gradient_over_batches():
    loss_module = MODELS.build(
        dict(type='mmlt.ProCoLoss', num_classes=NUM_CLASSES,
             feat_dim=FEAT_DIM, temperature=TAU, class_counts=CLASS_COUNTS))
    seen_features, seen_labels = [], []
    for seed, batch_size in enumerate([8, 5, 11]):
        features, labels = class_batch(batch_size, seed)
        raw = off_sphere(features, seed)
        loss = loss_module(F.normalize(raw, dim=-1), labels)
        (grad, ) = torch.autograd.grad(loss, raw)

        # Naive: update first, so the batch sees its own statistics.
        seen_features.append(features)
        seen_labels.append(labels)
        mu, kappa = naive_vmf(torch.cat(seen_features), torch.cat(seen_labels))
        reference_raw = raw.detach().clone().requires_grad_(True)
        reference = naive_view_losses(
            F.normalize(reference_raw, dim=-1), labels, mu, kappa).mean()
        (reference_grad, ) = torch.autograd.grad(reference, reference_raw)
        torch.testing.assert_close(loss, reference, rtol=1e-6, atol=0)
        torch.testing.assert_close(grad, reference_grad, rtol=1e-6, atol=1e-9)
        assert grad.abs().max() > 1e-3


def test_fresh_estimator_scores_first_batch_with_its_own_statistics():
    features, labels = class_batch(12, 3)
    loss = make_loss()(features, labels)
    mu, kappa = naive_vmf(features, labels)
    assert (kappa[torch.unique(labels)] > 0).all()
    torch.testing.assert_close(
        loss, naive_view_losses(features, labels, mu, kappa).mean(), rtol=1e-6,
        atol=0)
    # Scoring before updating (all kappa 0, every logit equal) differs.
    uniform = naive_view_losses(features, labels, torch.zeros_like(mu),
                                torch.zeros_like(kappa)).mean()
    assert abs(loss.item() - uniform.item()) > 1e-3


def test_multiple_views_update_in_order():
    features, labels = class_batch(9, 4, views=2)
    raw = off_sphere(features, 4)
    loss_module = make_loss(loss_weight=0.5)
    # class_batch is sample-major (N, V, p); the loss takes (V, N, p).
    loss = loss_module(F.normalize(raw, dim=-1).transpose(0, 1), labels)
    (grad, ) = torch.autograd.grad(loss, raw)

    reference_raw = raw.detach().clone().requires_grad_(True)
    reference_features = F.normalize(reference_raw, dim=-1)
    view_losses = []
    for view in range(2):
        seen = features[:, :view + 1].reshape(-1, FEAT_DIM)
        seen_labels = labels.repeat_interleave(view + 1)
        mu, kappa = naive_vmf(seen, seen_labels)
        view_losses.append(
            naive_view_losses(reference_features[:, view], labels, mu,
                              kappa).mean())
    reference = 0.5 * (view_losses[0] + view_losses[1]) / 2
    (reference_grad, ) = torch.autograd.grad(reference, reference_raw)
    torch.testing.assert_close(loss, reference, rtol=1e-6, atol=0)
    torch.testing.assert_close(grad, reference_grad, rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(
        loss_module.estimator.pooled_statistics()[1],
        torch.bincount(labels, minlength=5).double() * 2)


def test_weights_reduction_and_loss_weight():
    features, labels = class_batch(10, 5)
    weight = torch.linspace(0.1, 1.0, 10, dtype=torch.float64)
    # Frozen statistics, so every call sees the same mu and kappa.
    loss_module = make_loss(loss_weight=2.0, update_estimator=False)
    loss_module.estimator.update(features, labels)
    mu, kappa = naive_vmf(features, labels)
    per_sample = naive_view_losses(features, labels, mu, kappa)
    torch.testing.assert_close(
        loss_module(features, labels, reduction_override='none'),
        2.0 * per_sample)
    torch.testing.assert_close(
        loss_module(features, labels, weight=weight, reduction_override='sum'),
        2.0 * (weight * per_sample).sum())
    torch.testing.assert_close(
        loss_module(features, labels, weight=weight, avg_factor=4.0),
        2.0 * (weight * per_sample).sum() / 4.0)
    torch.testing.assert_close(
        loss_module(features[None].expand(3, -1, -1), labels),
        2.0 * per_sample.mean())
    assert loss_module.estimator.pooled_statistics()[1].sum() == 10


def test_no_update_when_disabled_or_in_eval_mode():
    features, labels = class_batch(6, 6)
    for loss_module in (make_loss(update_estimator=False), make_loss().eval()):
        loss_module(features, labels)
        assert loss_module.estimator.pooled_statistics()[1].sum() == 0


def test_float32_features_and_gradcheck():
    features, labels = class_batch(7, 7)
    loss64 = make_loss()
    loss32 = make_loss()
    value64 = loss64(features, labels)
    value32 = loss32(features.float(), labels)
    assert value32.dtype == torch.float32
    torch.testing.assert_close(value32.double(), value64, rtol=1e-5, atol=0)
    # Several samples per class keep kappa moderate, so log C_p(kappa) is
    # small enough for finite differences at eps = 1e-6.
    frozen = make_loss(update_estimator=False)
    frozen.estimator.update(*class_batch(40, 8))
    assert (frozen.estimator.concentration() < 1000).all()
    probe = unit_features(4, FEAT_DIM, seed=8).requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda z: frozen(F.normalize(z, dim=-1), labels[:4]), (probe, ),
        eps=1e-6, atol=1e-8, rtol=1e-6)


def test_estimator_config_instance_and_state_dict():
    estimator = VMFEstimator(NUM_CLASSES, FEAT_DIM, window='ema')
    loss_module = make_loss(estimator=estimator)
    assert loss_module.estimator is estimator
    built = make_loss(estimator=dict(kappa_method='official'))
    assert built.estimator.kappa_method == 'official'
    features, labels = class_batch(8, 9)
    loss_module(features, labels)
    state = loss_module.state_dict()
    assert {'log_prior', 'estimator.ema_sums',
            'estimator.ema_counts'} <= set(state)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    restored = ProCoLoss(
        NUM_CLASSES, FEAT_DIM, temperature=TAU,
        estimator=dict(window='ema'))  # no class_counts: from the checkpoint
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    next_features, next_labels = class_batch(8, 10)
    torch.testing.assert_close(
        restored(next_features, next_labels),
        loss_module(next_features, next_labels), rtol=0, atol=0)


def test_set_class_counts():
    loss_module = ProCoLoss(NUM_CLASSES, FEAT_DIM)
    features, labels = class_batch(4, 11)
    with pytest.raises(RuntimeError, match='set_class_counts'):
        loss_module(features, labels)
    loss_module.set_class_counts(torch.tensor(CLASS_COUNTS))
    torch.testing.assert_close(
        loss_module.log_prior,
        torch.tensor([math.log(c / 85.0) for c in CLASS_COUNTS],
                     dtype=torch.float64))
    assert torch.isfinite(loss_module(features, labels))


def test_bad_inputs_raise():
    loss_module = make_loss()
    features, labels = class_batch(4, 12)
    # Label values are not read on the host (no sync per step): an
    # out-of-range label fails in torch's indexing, not silently.
    with pytest.raises((IndexError, RuntimeError), match='out of bounds'):
        loss_module(features, torch.tensor([0, 5, 1, 1]))
    with pytest.raises(ValueError, match='dimension 4 .* feat_dim=6'):
        loss_module(features[:, :4], labels)
    with pytest.raises(ValueError, match=r'\(V, N, p\)'):
        loss_module(features[None, None], labels)
    with pytest.raises(ValueError, match='4 entries; expected num_classes=5'):
        loss_module.set_class_counts([1, 2, 3, 4])
    for temperature in (0.0, -0.1, float('inf')):
        with pytest.raises(ValueError, match=f'got {temperature!r}'):
            ProCoLoss(NUM_CLASSES, FEAT_DIM, temperature=temperature)
    with pytest.raises(ValueError, match='feat_dim=8; expected 5 and 6'):
        ProCoLoss(NUM_CLASSES, FEAT_DIM,
                  estimator=VMFEstimator(NUM_CLASSES, 8))
    # Nothing above reached the statistics.
    assert loss_module.estimator.pooled_statistics()[1].sum() == 0
    # A non-finite feature (an AMP overflow) gives a non-finite loss for the
    # optimizer wrapper to skip, and its batch stays out of the statistics.
    nan_features = features.clone()
    nan_features[1, 2] = float('nan')
    assert not torch.isfinite(loss_module(nan_features, labels))
    assert loss_module.estimator.pooled_statistics()[1].sum() == 0


def test_a_graph_kept_across_steps_fails_loudly_not_silently():
    """Each view reads its own kept mu, refreshed in place at the next step.
    Backward of a step whose mu was refreshed since (two forwards before one
    backward) is refused by autograd instead of using a changed mu."""
    loss_module = make_loss()
    features, labels = class_batch(3, 7)  # fewer rows than classes
    first = loss_module(features.float().requires_grad_(True), labels)
    loss_module(features.float(), labels)  # refreshes view 0's mu in place
    with pytest.raises(RuntimeError, match='inplace operation'):
        first.backward()


def test_score_before_update_is_leave_batch_out():
    """With score_before_update each view is scored against the statistics
    of the earlier batches and views only (here: batch 1, then view 0 of
    batch 2 for view 1), by the naive loop."""
    first, first_labels = class_batch(12, 7)
    features, labels = class_batch(9, 8, views=2)
    loss_module = make_loss(score_before_update=True)
    loss_module(first, first_labels)
    loss = loss_module(features.transpose(0, 1), labels)
    view_losses = []
    for view in range(2):
        seen = torch.cat([first] + [features[:, v] for v in range(view)])
        seen_labels = torch.cat([first_labels] + [labels] * view)
        mu, kappa = naive_vmf(seen, seen_labels)
        view_losses.append(
            naive_view_losses(features[:, view], labels, mu, kappa).mean())
    torch.testing.assert_close(loss, sum(view_losses) / 2, rtol=1e-6, atol=0)
    # ... and the estimator still ends with every view of both batches
    torch.testing.assert_close(
        loss_module.estimator.pooled_statistics()[1],
        (torch.bincount(first_labels, minlength=5) +
         2 * torch.bincount(labels, minlength=5)).double())
    # the authors' order differs: view 0 sees itself
    authors = make_loss()
    authors(first, first_labels)
    assert not torch.allclose(authors(features.transpose(0, 1), labels), loss)


@pytest.mark.parametrize('score_before_update', [False, True])
def test_estimator_prior_is_the_count_of_what_the_loss_saw(
        score_before_update):
    """prior='estimator': pi_c = (m_c + a) / sum(m + a) with m_c the
    samples of class c in the estimator when the batch is scored (with the
    batch in the authors' order, without it when scoring first), against
    the naive loss with those counts kept by a loop."""
    loss_module = ProCoLoss(
        NUM_CLASSES, FEAT_DIM, temperature=TAU, prior='estimator',
        prior_pseudo_count=0.5, score_before_update=score_before_update)
    loss_module.set_class_counts(CLASS_COUNTS)  # the hook's: not used
    seen_features, seen_labels = [], []
    for seed, batch_size in enumerate([8, 5, 11]):
        features, labels = class_batch(batch_size, seed)
        loss = loss_module(features, labels)
        if not score_before_update:
            seen_features.append(features)
            seen_labels.append(labels)
        scored_with = torch.cat(seen_labels) if seen_labels else labels[:0]
        counts = [float((scored_with == c).sum()) + 0.5
                  for c in range(NUM_CLASSES)]
        if seen_features:
            mu, kappa = naive_vmf(torch.cat(seen_features), scored_with)
        else:
            mu = torch.zeros(NUM_CLASSES, FEAT_DIM, dtype=torch.float64)
            kappa = torch.zeros(NUM_CLASSES, dtype=torch.float64)
        reference = naive_view_losses(features, labels, mu, kappa,
                                      counts=counts).mean()
        torch.testing.assert_close(loss, reference, rtol=1e-6, atol=0)
        if score_before_update:
            seen_features.append(features)
            seen_labels.append(labels)
    with pytest.raises(ValueError, match='prior'):
        make_loss(prior='stream')
