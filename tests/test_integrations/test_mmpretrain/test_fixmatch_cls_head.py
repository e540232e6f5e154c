"""mmlt.FixMatchClsHead: FixMatch's losses and mask, worked out by hand, and
ProCo fed by confident pseudo-labels."""
import math

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip('mmpretrain')

from mmpretrain.structures import DataSample  # noqa: E402

import mmlt  # noqa: E402,F401
from mmlt.registry import MODELS  # noqa: E402
from op_recorder import HOST_SYNCS, OpRecorder  # noqa: E402

C = 3
COUNTS = [200, 50, 10]  # many / medium / few


def build(threshold=0.9, proco=True, **kwargs):
    head = MODELS.build(
        dict(
            type='mmlt.FixMatchClsHead',
            num_classes=C,
            in_channels=C,
            proj_dims=(8, 4),
            loss=dict(type='mmpretrain.CrossEntropyLoss'),
            threshold=threshold,
            contrast_loss=dict(type='mmlt.ProCoLoss', temperature=0.1)
            if proco else None,
            **kwargs))
    # logits are the features themselves
    with torch.no_grad():
        head.fc.weight.copy_(torch.eye(C))
        head.fc.bias.zero_()
    for module in head.modules():
        if callable(getattr(module, 'set_class_counts', None)):
            module.set_class_counts(COUNTS)
    return head


# 2 labeled then 4 unlabeled samples; weak-view logits chosen so that
# unlabeled 0 and 2 pass a 0.9 threshold (softmax of (5, 0, 0) = 0.987,
# of (0, 0, 2.5) = 0.857 < 0.9 unless debiased, of (1, 0, 0) = 0.576).
WEAK = torch.tensor([[2., 0, 0], [0, 1, 0],
                     [5., 0, 0], [0, 0, 2.5], [0, 6, 0], [1, 0, 0]])
STRONG = torch.tensor([[1., 0, 0], [0, 2, 0],
                       [0.5, 1, 0], [0, 0, 1], [2, 0, 0], [0, 1, 1]])
LABELS = [0, 1]
TRUE = [0, 2, 1, 0]  # kept-aside labels of the unlabeled samples


def samples():
    out = [DataSample().set_gt_label(y) for y in LABELS]
    for y in TRUE:
        sample = DataSample()
        sample.set_field(y, 'true_label')
        out.append(sample)
    return out


def feats():
    return (torch.cat([WEAK, STRONG]), )


def test_losses_mask_and_statistics_by_hand():
    head = build(proco=False)
    losses = head.loss(feats(), samples())
    # labeled: CE of the weak views
    expected_cls = F.cross_entropy(WEAK[:2], torch.tensor(LABELS))
    torch.testing.assert_close(losses['loss_cls'], expected_cls)
    # unlabeled: pseudo-labels 0, 2, 1, 0; kept: 0.993 and 0.995 (u0, u2)
    probs = WEAK[2:].softmax(1)
    assert probs.max(1).values.tolist() == pytest.approx(
        [math.exp(5) / (math.exp(5) + 2), math.exp(2.5) / (math.exp(2.5) + 2),
         math.exp(6) / (math.exp(6) + 2), math.e / (math.e + 2)])
    kept = [0, 2]
    ce = [F.cross_entropy(STRONG[2 + u][None], torch.tensor([y]))
          for u, y in zip(kept, [0, 1])]
    torch.testing.assert_close(losses['loss_unlabeled'], sum(ce) / 4)
    # 2 of 4 kept; both kept ones correct? u0: pseudo 0 = true 0 yes;
    # u2: pseudo 1 = true 1 yes
    assert losses['pl_mask_rate'].item() == pytest.approx(50.0)
    assert losses['pl_acc'].item() == pytest.approx(100.0)
    # by true class group: many (class 0) has u0 (kept) and u3 (not);
    # medium (class 1) u2 kept; few (class 2) u1 not kept
    assert losses['pl_mask_rate_many'].item() == pytest.approx(50.0)
    assert losses['pl_mask_rate_medium'].item() == pytest.approx(100.0)
    assert losses['pl_mask_rate_few'].item() == pytest.approx(0.0)
    assert losses['pl_acc_few'].item() == 0.0  # nothing kept: 0, not NaN
    # counts accumulate until reset
    head.loss(feats(), samples())
    assert head.pseudo_label_counts[0].tolist() == [4., 2., 2.]
    head.reset_pseudo_label_counts()
    assert head.pseudo_label_counts.sum() == 0


def test_debiased_pseudo_labels():
    """logits - log prior: (0, 0, 2.5) - log([200, 50, 10] / 260) has
    confidence 0.995 for class 2, so u1 is kept too (and wrong-free)."""
    head = build(proco=False, pseudo_label_tau=1.0)
    losses = head.loss(feats(), samples())
    log_prior = torch.log(torch.tensor(COUNTS, dtype=torch.float) / 260)
    confidence = (WEAK[2:] - log_prior).softmax(1).max(1).values
    expected_kept = (confidence >= 0.9).float().mean() * 100
    assert losses['pl_mask_rate'].item() == pytest.approx(
        expected_kept.item())
    assert (confidence >= 0.9).tolist()[1]


def test_no_confident_pseudo_label_means_labeled_statistics_only():
    head = build(threshold=1.0)
    estimator = head.contrast_branch.loss.estimator
    labeled_only = build(threshold=1.0)
    labeled_only.load_state_dict(head.state_dict())
    head.train()
    # BatchNorm of the projector mixes rows; in eval mode it does not, so
    # the branch on the labeled rows alone is comparable
    head.contrast_branch.projector.eval()
    losses = head.loss(feats(), samples())
    assert losses['pl_mask_rate'].item() == 0
    assert losses['loss_unlabeled'].item() == 0
    # the same branch on the two labeled samples alone
    x = feats()[0]
    rows = torch.cat([x[:2], x[6:8]])
    branch = labeled_only.contrast_branch
    branch.train()
    branch.projector.eval()
    expected = branch(rows, torch.tensor(LABELS), 2)
    torch.testing.assert_close(losses['loss_contrast'], expected)
    reference = branch.loss.estimator
    for key, value in reference.state_dict().items():
        torch.testing.assert_close(estimator.state_dict()[key], value)
    assert estimator.current_counts.sum() == 4  # 2 samples x 2 views


def test_confident_pseudo_labels_enter_the_estimator():
    head = build(threshold=0.9)
    head.train()
    head.loss(feats(), samples())
    counts = head.contrast_branch.loss.estimator.current_counts
    # labeled 0, 1 and pseudo-labeled 0 (u0), 1 (u2); two views each
    assert counts.tolist() == [4., 4., 0.]
    # contrast_pseudo_labels=False: labeled only
    head = build(threshold=0.9, contrast_pseudo_labels=False)
    head.train()
    head.loss(feats(), samples())
    counts = head.contrast_branch.loss.estimator.current_counts
    assert counts.tolist() == [2., 2., 0.]


def test_step_has_no_host_sync_and_float32_products():
    head = build(threshold=0.9)
    head.train()
    data_samples = samples()
    recorder = OpRecorder()
    with recorder:
        losses = head.loss(feats(), data_samples)
        sum(v for k, v in losses.items() if 'loss' in k).backward()
    assert not recorder.ops & HOST_SYNCS, recorder.ops & HOST_SYNCS
    for dtypes in recorder.product_dtypes:
        assert set(dtypes) == {torch.float32}, dtypes


def test_bad_arguments():
    for threshold in (0, -0.1, 1.5):
        with pytest.raises(ValueError, match=r'threshold must be in \(0, 1\]'):
            build(threshold=threshold)
    with pytest.raises(ValueError, match='mmlt.ProCoLoss or None'):
        MODELS.build(
            dict(type='mmlt.FixMatchClsHead', num_classes=C, in_channels=C,
                 proj_dims=(8, 4), contrast_loss=dict(type='mmlt.SupConLoss')))
    head = build()
    with pytest.raises(ValueError, match='weak and a strong view'):
        head.loss((feats()[0][:6], ), samples())
    unlabeled_only = samples()[2:]
    with pytest.raises(ValueError, match='without labeled samples'):
        head.loss((torch.cat([WEAK[2:], STRONG[2:]]), ), unlabeled_only)


def test_bf16_autocast_step_is_finite_with_float32_proco_products():
    """The CPU stand-in for --amp: the step runs under bfloat16 autocast and
    ProCo's B x C x p product stays float32."""
    head = build(threshold=0.9)
    head.train()
    recorder = OpRecorder()
    with torch.autocast('cpu', dtype=torch.bfloat16), recorder:
        losses = head.loss(feats(), samples())
    for key, value in losses.items():
        assert torch.isfinite(value).all(), key
    assert (torch.float32, torch.float32) in recorder.product_dtypes


# ----------------------------------------------- distribution-aware modes
LOG_PRIOR = torch.log(torch.tensor(COUNTS, dtype=torch.float64) / 260)


def _expected_unlabeled(adjustment, threshold=0.9):
    """Pseudo-labels, mask, q and the unlabeled loss from the class's
    formulas, for an adjustment ``a`` added to the weak and strong logits."""
    q = (WEAK[2:].double() + adjustment).softmax(1)
    confidence, pseudo = q.max(1)
    mask = (confidence >= threshold).double()
    strong = STRONG[2:].double() + adjustment
    ce = F.cross_entropy(strong, pseudo, reduction='none')
    return pseudo, mask, q, (mask * ce).sum() / 4


def test_estimated_mode_by_hand():
    """DebiasPL-style: a = log pi_u_hat - log pi_l for a CE-trained head,
    added to the pseudo-labels' and the unlabeled loss's logits; the
    estimates then take the batch (momentum 0)."""
    head = build(proco=False, unlabeled_prior=dict(
        mode='estimated', momentum=0.0))
    pi_hat = torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64)
    head.unlabeled_prior.mean_prediction.copy_(pi_hat)
    losses = head.loss(feats(), samples())
    pseudo, mask, q, loss = _expected_unlabeled(pi_hat.log() - LOG_PRIOR)
    torch.testing.assert_close(losses['loss_unlabeled'].double(), loss,
                               rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(head.unlabeled_prior.mean_prediction,
                               q.sum(0) / 4)
    kept = torch.zeros(3, dtype=torch.float64).index_add_(0, pseudo, mask)
    torch.testing.assert_close(head.unlabeled_prior.histogram,
                               kept / kept.sum())
    # an LA-trained head (tau 1) is balanced already: a = log pi_u_hat
    head = build(proco=False, unlabeled_prior=dict(mode='estimated'))
    head.loss_module = MODELS.build(dict(type='mmlt.LogitAdjustLoss',
                                         tau=1.0, class_counts=COUNTS))
    head.labeled_tau = head._labeled_tau()
    head.unlabeled_prior.mean_prediction.copy_(pi_hat)
    torch.testing.assert_close(head._unlabeled_adjustment(), pi_hat.log())


def test_pseudo_labels_join_proco_after_its_warmup():
    # epoch 1 of a 1-epoch warm-up: the estimator sees labeled samples only,
    # and the loss is the one without pseudo-labels
    head = build(threshold=0.9, contrast_warmup_epochs=1)
    without = build(threshold=0.9, contrast_pseudo_labels=False)
    without.load_state_dict(head.state_dict())  # the same projector
    for h in (head, without):
        h.train()
    losses, expected = head.loss(feats(), samples()), without.loss(
        feats(), samples())
    torch.testing.assert_close(losses['loss_contrast'],
                               expected['loss_contrast'])
    estimator = head.contrast_branch.loss.estimator
    assert estimator.current_counts.tolist() == [2., 2., 0.]
    # after the epoch ends: the kept pseudo-labels u0 (0) and u2 (1) join
    head.end_of_epoch()
    assert int(head.unlabeled_prior.epochs_done) == 1
    head.loss(feats(), samples())
    assert estimator.current_counts.tolist() == [2. + 4., 2. + 4., 0.]
    with pytest.raises(ValueError, match='contrast_warmup_epochs must be'):
        build(contrast_warmup_epochs=-1)


def test_adaptive_tau_held_during_its_warmup():
    from mmlt.models.utils.unlabeled_prior import acr_tau
    head = build(proco=False, unlabeled_prior=dict(
        mode='adaptive', momentum=0.0, warmup_epochs=1))
    taus = []
    for _ in range(2):
        head.loss(feats(), samples())
        head.end_of_epoch()
        taus.append(float(head.unlabeled_prior.adaptive_tau))
    # held at its start after epoch 1 (the warm-up); set from the estimate
    # after epoch 2 (without a warm-up: after epoch 1)
    expected = float(acr_tau(head.unlabeled_prior.estimate(), LOG_PRIOR.exp()))
    assert taus == [1.0, pytest.approx(expected)]
    assert abs(expected - 1.0) > 0.05


def test_adaptive_mode_tau_per_epoch():
    head = build(proco=False, unlabeled_prior=dict(mode='adaptive',
                                                   momentum=0.0))
    # before any epoch end: tau 1, so a = (0 - 1) log pi_l for a CE head
    losses = head.loss(feats(), samples())
    _, _, _, loss = _expected_unlabeled(-LOG_PRIOR)
    torch.testing.assert_close(losses['loss_unlabeled'].double(), loss,
                               rtol=1e-5, atol=1e-6)
    head.end_of_epoch()
    estimate = head.unlabeled_prior.estimate()
    anchors = [LOG_PRIOR.exp(), torch.full((3, ), 1 / 3).double(),
               LOG_PRIOR.exp().flip(0)]
    distances = torch.stack([((estimate - a) * (estimate.log() - a.log()))
                             .sum() for a in anchors])
    expected_tau = 2 * distances.softmax(0)[0]
    torch.testing.assert_close(head.unlabeled_prior.adaptive_tau,
                               expected_tau)
    stats = head.unlabeled_prior_stats()
    assert stats['pi_u_adaptive_tau'] == pytest.approx(float(expected_tau))
    assert set(stats['distributions']) == {'true', 'mean_prediction',
                                           'histogram', 'balanced_histogram',
                                           'balanced_mean'}
    # the true distribution of the stream: TRUE = [0, 2, 1, 0]
    assert stats['distributions']['true'] == [0.5, 0.25, 0.25]


def _adaptive_head_after_a_batch(source, tau):
    """An ACR-style head (no EMA memory) at ``tau`` after one batch."""
    head = build(proco=False, unlabeled_prior=dict(
        mode='adaptive', source=source, momentum=0.0))
    head.unlabeled_prior.adaptive_tau.fill_(tau)
    head.loss(feats(), samples())
    return head


def test_balanced_estimate_is_acrs_and_ignores_the_adjustment():
    """ACR's estimate: the histogram of the confident predictions of the
    classifier under a uniform prior. A CE head's logits carry log pi_l, so
    it predicts with WEAK - log pi_l (see test_debiased_pseudo_labels):
    u1 -> class 2 (0.980) and u2 -> class 1 (0.987) pass 0.9, u0 (0.861)
    and u3 (0.75) do not, so [0, 1/2, 1/2], whatever ACR's tau is."""
    log_prior = torch.log(torch.tensor(COUNTS, dtype=torch.float) / 260)
    confidence, labels = (WEAK[2:] - log_prior).softmax(1).max(1)
    expected = torch.zeros(C, dtype=torch.float64).index_add_(
        0, labels, (confidence >= 0.9).double())
    assert (expected / expected.sum()).tolist() == [0.0, 0.5, 0.5]
    histograms = []
    for tau in (0.0, 2.0):
        head = _adaptive_head_after_a_batch('balanced_histogram', tau)
        torch.testing.assert_close(head.unlabeled_prior.balanced_histogram,
                                   expected / expected.sum())
        histograms.append(head.unlabeled_prior.histogram.clone())
    assert not torch.equal(*histograms)  # the adjusted pseudo-labels move
    head.end_of_epoch()  # ACR's tau from the balanced estimate
    anchors = torch.stack([log_prior.exp().double(),
                           torch.full((C, ), 1 / C).double(),
                           log_prior.exp().double().flip(0)])
    estimate = head.unlabeled_prior.estimate()
    distances = ((estimate - anchors) * (estimate.log() - anchors.log())).sum(1)
    torch.testing.assert_close(head.unlabeled_prior.adaptive_tau,
                               2 * distances.softmax(0)[0])
    # an LA-trained head (tau 1) is balanced already: u0 and u2 (raw WEAK)
    head = build(proco=False, unlabeled_prior=dict(
        mode='adaptive', source='balanced_histogram', momentum=0.0))
    head.loss_module = MODELS.build(dict(type='mmlt.LogitAdjustLoss',
                                         tau=1.0, class_counts=COUNTS))
    head.labeled_tau = head._labeled_tau()
    head.loss(feats(), samples())
    assert head.unlabeled_prior.balanced_histogram.tolist() == [0.5, 0.5, 0.0]


def test_balanced_mean_is_the_balanced_posterior_mean():
    """The balanced classifier's mean prediction over all unlabeled rows
    (confident or not), the same under any adjustment: for a CE head the
    posterior of WEAK - log pi_l, averaged by a slow loop."""
    log_prior = torch.log(torch.tensor(COUNTS, dtype=torch.float64) / 260)
    rows = [(WEAK[i].double() - log_prior).softmax(0) for i in (2, 3, 4, 5)]
    expected = sum(rows) / len(rows)
    for tau in (0.0, 2.0):
        head = _adaptive_head_after_a_batch('balanced_mean', tau)
        torch.testing.assert_close(head.unlabeled_prior.balanced_mean,
                                   expected, rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(head.unlabeled_prior.estimate(),
                                   expected, rtol=1e-6, atol=1e-7)
    head.end_of_epoch()  # ACR's tau from it
    anchors = torch.stack([log_prior.exp(), torch.full((C, ), 1 / C).double(),
                           log_prior.exp().flip(0)])
    estimate = head.unlabeled_prior.estimate()
    distances = ((estimate - anchors) * (estimate.log() - anchors.log())).sum(1)
    torch.testing.assert_close(head.unlabeled_prior.adaptive_tau,
                               2 * distances.softmax(0)[0])
    stats = head.unlabeled_prior_stats()
    assert stats['distributions']['balanced_mean'] == pytest.approx(
        estimate.tolist())


@pytest.mark.parametrize('missing', [['balanced_histogram', 'balanced_mean'],
                                     ['balanced_mean']])
def test_checkpoints_without_the_balanced_estimates_load(missing):
    head = build(proco=False, unlabeled_prior=dict(mode='adaptive'))
    state = head.state_dict()
    for name in missing:
        del state['unlabeled_prior.' + name]
        getattr(head.unlabeled_prior, name).fill_(0.5)
    head.load_state_dict(state)  # strict: filled in, uniform
    for name in missing:
        assert getattr(head.unlabeled_prior, name).tolist() == pytest.approx(
            [1 / 3] * 3)


def test_unknown_labeled_loss_is_refused_for_distribution_modes():
    with pytest.raises(ValueError, match='how the labeled loss biases'):
        MODELS.build(
            dict(type='mmlt.FixMatchClsHead', num_classes=C, in_channels=C,
                 loss=dict(type='mmpretrain.FocalLoss'),
                 unlabeled_prior=dict(mode='estimated')))


def test_negative_pseudo_label_tau_adds_the_log_prior():
    """tau -1: logits + log pi_l (a consistent unlabeled split for an LA
    head); the unlabeled loss itself is not adjusted in this mode."""
    head = build(proco=False, pseudo_label_tau=-1.0)
    losses = head.loss(feats(), samples())
    q = (WEAK[2:].double() + LOG_PRIOR).softmax(1)
    confidence, pseudo = q.max(1)
    mask = (confidence >= 0.9).double()
    assert losses['pl_mask_rate'].item() == pytest.approx(
        100 * mask.mean().item())
    ce = F.cross_entropy(STRONG[2:].double(), pseudo, reduction='none')
    torch.testing.assert_close(losses['loss_unlabeled'].double(),
                               (mask * ce).sum() / 4, rtol=1e-5, atol=1e-6)


def test_logit_adjusted_unlabeled_loss():
    """LogitAdjustLoss as unlabeled_loss: CE(strong + log pi, y_hat) on the
    kept pseudo-labels, averaged over all unlabeled samples."""
    head = build(proco=False, unlabeled_loss=dict(
        type='mmlt.LogitAdjustLoss', tau=1.0))
    losses = head.loss(feats(), samples())
    confidence, pseudo = WEAK[2:].softmax(1).max(1)
    mask = (confidence >= 0.9).double()
    ce = F.cross_entropy(STRONG[2:].double() + LOG_PRIOR, pseudo,
                         reduction='none')
    torch.testing.assert_close(losses['loss_unlabeled'].double(),
                               (mask * ce).sum() / 4, rtol=1e-5, atol=1e-6)


def test_estimator_sums_are_the_labeled_and_kept_features():
    head = build(threshold=0.9)
    head.train()
    branch = head.contrast_branch
    branch.projector.eval()  # rows do not mix: comparable projections
    x = feats()[0]
    head.loss((x, ), samples())
    z = branch.project(x).view(2, 6, -1)
    # labeled 0 -> 0, 1 -> 1; kept unlabeled u0 -> 0, u2 -> 1 (rows 2, 4)
    expected = torch.zeros(3, z.shape[-1], dtype=torch.float64)
    for row, label in ((0, 0), (1, 1), (2, 0), (4, 1)):
        expected[label] += z[:, row].double().sum(0)
    torch.testing.assert_close(branch.loss.estimator.current_sums, expected,
                               rtol=1e-5, atol=1e-6)


def test_estimator_prior_follows_the_kept_samples():
    """ProCo with prior='estimator': the adjustment is the estimator's
    weighted counts (labeled + kept pseudo-labels), not the file counts."""
    head = build(threshold=0.9)
    head.contrast_branch.loss.prior = 'estimator'
    head.train()
    head.loss(feats(), samples())
    loss = head.contrast_branch.loss
    counts = torch.tensor([4., 4., 0.], dtype=torch.float64) + 1
    torch.testing.assert_close(loss.current_log_prior(),
                               (counts / counts.sum()).log())
