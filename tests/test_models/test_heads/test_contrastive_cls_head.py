import pytest
import torch
import torch.nn.functional as F

from mmlt.models.heads import ContrastiveClsHead, CosineClassifier

pytest.importorskip('mmpretrain')
from mmpretrain.structures import DataSample  # noqa: E402

COUNTS = [40, 20, 10, 5]


def samples(labels):
    return [DataSample().set_gt_label(int(y)) for y in labels]


def make_head(contrast='mmlt.ProCoLoss', **kwargs):
    contrast_loss = None if contrast is None else dict(
        type=contrast, temperature=0.1)
    kwargs.setdefault('class_counts', COUNTS)
    return ContrastiveClsHead(
        num_classes=4,
        in_channels=8,
        proj_dims=(16, 6),
        contrast_loss=contrast_loss,
        **kwargs)


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
    counts = head.contrast_loss.estimator.current_counts
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
    assert head.prototype_mlp is not None
    x = torch.randn(3 * 4, 8)
    losses = head.loss((x, ), samples([0, 1, 2, 3]))
    losses['loss_contrast'].backward()
    # the prototype branch is trained through the BCL loss
    assert head.fc.weight.grad.abs().sum() > 0
    assert all(p.grad is not None for p in head.prototype_mlp.parameters())


def test_single_view_skips_contrastive_branch():
    head = make_head()
    losses = head.loss((torch.randn(4, 8), ), samples([0, 1, 2, 3]))
    assert 'loss_contrast' not in losses
    assert head.contrast_loss.estimator.current_counts.sum() == 0


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
    assert head.contrast_loss.estimator.current_counts.sum() == 0


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
    with pytest.raises(ValueError, match='no training samples'):
        head.set_class_counts([1, 0, 3, 4])
    with pytest.raises(ValueError, match='classifier'):
        make_head(classifier='mlp')
