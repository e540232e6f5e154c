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
