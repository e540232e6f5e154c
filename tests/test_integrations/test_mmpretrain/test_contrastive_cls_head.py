"""ContrastiveClsHead: MMPretrain's ClsHead with mmlt's contrastive branch."""
import os.path as osp

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip('mmpretrain')
from mmpretrain.structures import DataSample  # noqa: E402

from mmlt.integrations.mmpretrain import ContrastiveClsHead  # noqa: E402
from mmlt.models.heads import CosineClassifier  # noqa: E402

COUNTS = [40, 20, 10, 5]
LEGACY = osp.join(osp.dirname(__file__), '..', '..', 'data',
                  'legacy_heads_a98a508.pth')


def give_counts(module, counts=COUNTS):
    """What ClassCountsHook does: every module that takes counts, once."""
    for child in module.modules():
        if hasattr(child, 'set_class_counts'):
            child.set_class_counts(counts)


def samples(labels):
    return [DataSample().set_gt_label(int(y)) for y in labels]


def make_head(contrast='mmlt.ProCoLoss', **kwargs):
    contrast_loss = None if contrast is None else dict(
        type=contrast, temperature=0.1)
    head = ContrastiveClsHead(
        num_classes=4,
        in_channels=8,
        proj_dims=(16, 6),
        contrast_loss=contrast_loss,
        **kwargs)
    give_counts(head)
    return head


def test_loss_splits_views_and_matches_components():
    torch.manual_seed(0)
    head = make_head()
    labels = torch.tensor([0, 1, 2, 3, 0])
    x = torch.randn(3 * 5, 8, requires_grad=True)
    losses = head.loss((x, ), samples(labels))
    assert set(losses) == {'loss_cls', 'loss_contrast', 'accuracy_top-1'}
    # the classifier loss is logit-adjusted CE on view 1 only
    log_prior = torch.log(torch.tensor(COUNTS, dtype=torch.float) / 75)
    expected_cls = F.cross_entropy(head.fc(x[:5]) + log_prior, labels)
    torch.testing.assert_close(losses['loss_cls'], expected_cls)
    # the contrastive loss saw views 2 and 3 of each sample: 10 features
    counts = head.contrast_branch.loss.estimator.current_counts
    assert counts.sum().item() == 10
    assert counts.tolist() == [4, 2, 2, 2]
    # gradient reaches the backbone features of every view
    (losses['loss_cls'] + losses['loss_contrast']).backward()
    assert x.grad[:5].abs().sum() > 0 and x.grad[5:].abs().sum() > 0


def test_contrast_weight_scales_contrastive_loss():
    torch.manual_seed(0)
    x = torch.randn(3 * 4, 8)
    labels = torch.tensor([0, 1, 2, 3])
    torch.manual_seed(1)
    one = make_head(contrast='mmlt.SupConLoss', contrast_weight=1.0)
    torch.manual_seed(1)
    half = make_head(contrast='mmlt.SupConLoss', contrast_weight=0.5)
    a = one.loss((x, ), samples(labels))['loss_contrast']
    b = half.loss((x, ), samples(labels))['loss_contrast']
    torch.testing.assert_close(b, 0.5 * a)


def test_bcl_gets_prototypes_from_classifier_weights():
    torch.manual_seed(0)
    head = make_head(contrast='mmlt.BCLLoss')
    assert head.contrast_branch.prototype_mlp is not None
    x = torch.randn(3 * 4, 8)
    losses = head.loss((x, ), samples([0, 1, 2, 3]))
    losses['loss_contrast'].backward()
    # the prototype branch is trained through the BCL loss
    assert head.fc.weight.grad.abs().sum() > 0
    assert all(p.grad is not None
               for p in head.contrast_branch.prototype_mlp.parameters())


def test_single_view_skips_contrastive_branch():
    head = make_head()
    losses = head.loss((torch.randn(4, 8), ), samples([0, 1, 2, 3]))
    assert 'loss_contrast' not in losses
    assert head.contrast_branch.loss.estimator.current_counts.sum() == 0


def test_predict_uses_classifier_only_and_posthoc_adjustment():
    torch.manual_seed(0)
    head = make_head(posthoc_tau=1.0)
    x = torch.randn(3, 8)
    preds = head.predict((x, ), samples([0, 1, 2]))
    log_prior = torch.log(torch.tensor(COUNTS, dtype=torch.float) / 75)
    expected = F.softmax(head.fc(x) - log_prior, dim=1)
    for pred, score in zip(preds, expected):
        torch.testing.assert_close(pred.pred_score, score)
        assert pred.pred_label.item() == score.argmax().item()
    # predicting does not touch the estimator
    assert head.contrast_branch.loss.estimator.current_counts.sum() == 0


def test_cosine_classifier_is_scaled_cosine():
    clf = CosineClassifier(5, 3, scale=30.0)
    x = torch.randn(4, 5)
    expected = 30 * F.cosine_similarity(
        x[:, None, :], clf.weight[None, :, :], dim=2)
    torch.testing.assert_close(clf(x), expected)


def test_bad_inputs_raise_clear_errors():
    head = make_head()
    with pytest.raises(ValueError, match='in_channels'):
        head.loss((torch.randn(6, 5), ), samples([0, 1, 2]))
    with pytest.raises(ValueError, match='view-major'):
        head.loss((torch.randn(7, 8), ), samples([0, 1, 2]))
    with pytest.raises(ValueError, match='num_classes=4'):
        head.set_class_counts([1, 2, 3])
    with pytest.raises(ValueError, match='log\\(0\\)'):
        head.set_class_counts([1, 0, 3, 4])
    with pytest.raises(ValueError, match='classifier'):
        make_head(classifier='mlp')


def test_contrast_weight_and_loss_weight_are_one_weight():
    with pytest.raises(ValueError, match='keep only contrast_loss.loss_weight'):
        ContrastiveClsHead(
            num_classes=4, in_channels=8, proj_dims=(16, 6),
            contrast_loss=dict(type='mmlt.SupConLoss', loss_weight=0.5),
            contrast_weight=0.5)
    head = make_head(contrast='mmlt.SupConLoss', contrast_weight=0.25)
    assert head.contrast_branch.loss.loss_weight == 0.25


def test_stage_one_head_trains_no_classifier_loss():
    head = make_head(contrast='mmlt.SupConLoss', loss=None)
    losses = head.loss((torch.randn(3 * 4, 8), ), samples([0, 1, 2, 3]))
    assert 'loss_cls' not in losses and 'loss_contrast' in losses


def test_posthoc_needs_a_prior():
    head = ContrastiveClsHead(num_classes=4, in_channels=8, posthoc_tau=1.0)
    with pytest.raises(RuntimeError, match='ClassCountsHook'):
        head.predict((torch.randn(2, 8), ), samples([0, 1]))


@pytest.mark.parametrize('name, contrast', [('proco', 'mmlt.ProCoLoss'),
                                            ('bcl', 'mmlt.BCLLoss')])
def test_checkpoint_of_the_previous_layout_loads(name, contrast):
    """A head state dict written by mmlt a98a508 (projector, prototype_mlp and
    contrast_loss on the head) loads into the branch, prior included."""
    legacy = torch.load(LEGACY, weights_only=False)[f'cls_{name}']
    legacy = {k[len('head.'):]: v for k, v in legacy.items()}
    head = ContrastiveClsHead(
        num_classes=4, in_channels=8, proj_dims=(16, 6),
        contrast_loss=dict(type=contrast, temperature=0.1), posthoc_tau=1.0)
    assert not head.prior_is_set
    result = head.load_state_dict(dict(legacy), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert head.prior_is_set
    torch.testing.assert_close(head.contrast_branch.projector[0].weight,
                               legacy['projector.0.weight'])
    torch.testing.assert_close(head.log_prior, legacy['log_prior'])
    if name == 'proco':
        estimator = head.contrast_branch.loss.estimator
        torch.testing.assert_close(
            estimator.current_counts,
            legacy['contrast_loss.estimator.current_counts'])
        assert head.contrast_branch.loss.prior_is_set
    # and post-hoc adjustment uses the loaded prior
    x = torch.randn(2, 8)
    expected = head.fc(x) - legacy['log_prior'].float()
    pred = head.predict((x, ), samples([0, 1]))
    torch.testing.assert_close(pred[0].pred_score,
                               F.softmax(expected, dim=1)[0])


def test_prior_of_a_checkpoint_round_trips():
    """The prior buffer has a fixed shape, so a fresh head loads it (it used
    to be an empty buffer and was dropped with a size mismatch)."""
    head = make_head(posthoc_tau=1.0)
    fresh = ContrastiveClsHead(
        num_classes=4, in_channels=8, proj_dims=(16, 6),
        contrast_loss=dict(type='mmlt.ProCoLoss', temperature=0.1),
        posthoc_tau=1.0)
    fresh.load_state_dict(head.state_dict(), strict=True)
    assert fresh.prior_is_set
    torch.testing.assert_close(fresh.log_prior, head.log_prior)


def test_loss_step_has_no_host_sync():
    from op_recorder import OpRecorder
    for contrast in ('mmlt.ProCoLoss', 'mmlt.BCLLoss', 'mmlt.SupConLoss'):
        head = make_head(contrast=contrast)
        x = torch.randn(3 * 5, 8, requires_grad=True)
        data_samples = samples([0, 1, 2, 3, 0])
        recorder = OpRecorder()
        with recorder:
            losses = head.loss((x, ), data_samples)
            sum(v for k, v in losses.items() if 'loss' in k).backward()
        assert not recorder.host_syncs, (contrast, recorder.host_syncs)
