"""DetLogitAdjustLoss: logit adjustment of object classes, background kept."""
import math

import pytest
import torch

pytest.importorskip('mmdet')

from mmlt.integrations.mmdet import DetLogitAdjustLoss  # noqa: E402


def slow_reference(cls_score, labels, counts, tau):
    """CE of each row with a_c = tau * log(n_c / mean n), a_bg = 0."""
    mean = sum(counts) / len(counts)
    adjust = [tau * math.log(n / mean) for n in counts] + [0.0]
    losses = []
    for row, label in zip(cls_score.tolist(), labels.tolist()):
        shifted = [x + a for x, a in zip(row, adjust)]
        log_norm = math.log(sum(math.exp(v) for v in shifted))
        losses.append(log_norm - shifted[label])
    return losses


@pytest.mark.parametrize('tau', [1.0, 0.5])
def test_matches_slow_reference(tau):
    counts = [300, 40, 7]
    torch.manual_seed(0)
    cls_score = torch.randn(6, 4, dtype=torch.float64)
    labels = torch.tensor([0, 1, 2, 3, 3, 1])  # 3 = background
    loss = DetLogitAdjustLoss(class_counts=counts, tau=tau, reduction='none')
    expected = torch.tensor(
        slow_reference(cls_score, labels, counts, tau), dtype=torch.float64)
    torch.testing.assert_close(loss(cls_score, labels), expected)
    # mmdet's call: label weights and avg_factor
    weights = torch.tensor([1., 1., 0., 1., 1., 1.], dtype=torch.float64)
    mean_loss = DetLogitAdjustLoss(class_counts=counts, tau=tau)(
        cls_score, labels, weights, avg_factor=5.0)
    torch.testing.assert_close(mean_loss, (expected * weights).sum() / 5.0)


def test_balanced_counts_give_cross_entropy():
    cls_score = torch.randn(5, 4)
    labels = torch.tensor([0, 1, 2, 3, 1])
    loss = DetLogitAdjustLoss(class_counts=[9, 9, 9])
    torch.testing.assert_close(
        loss(cls_score, labels),
        torch.nn.functional.cross_entropy(cls_score, labels))


def test_hook_protocol_and_checkpoint():
    loss = DetLogitAdjustLoss()
    with pytest.raises(RuntimeError, match='class prior'):
        loss(torch.randn(2, 4), torch.tensor([0, 3]))
    loss.set_class_counts([1, 2, 4])
    assert loss.num_classes == 4  # three object classes + background
    assert loss.log_prior[-1].item() == 0.0
    restored = DetLogitAdjustLoss()
    restored.load_state_dict(loss.state_dict())
    torch.testing.assert_close(restored.log_prior, loss.log_prior)
    with pytest.raises(
            ValueError,
            match='3 object classes of class_counts plus background'):
        # an (N, C) classifier without a background column is refused
        loss(torch.randn(2, 3), torch.tensor([0, 1]))


def test_online_prior_follows_the_cumulative_roi_labels():
    """prior='online': each batch's object labels (weight > 0) are counted
    first, then the adjustment of the cumulative counts + pseudo-count, as
    the slow reference computes it from counts kept by hand."""
    torch.manual_seed(1)
    loss = DetLogitAdjustLoss(prior='online', num_classes=3,
                              pseudo_count=0.5, reduction='none')
    loss.set_class_counts([5, 5, 5])  # the hook's counts: not used
    seen = [0.0, 0.0, 0.0]
    for step in range(4):
        cls_score = torch.randn(7, 4, dtype=torch.float64)
        labels = torch.randint(0, 4, (7, ))
        weights = (torch.rand(7) > 0.2).double()
        for label, w in zip(labels.tolist(), weights.tolist()):
            if label < 3 and w > 0:
                seen[label] += 1
        expected = slow_reference(cls_score, labels,
                                  [n + 0.5 for n in seen], 1.0)
        torch.testing.assert_close(
            loss(cls_score, labels, weights),
            torch.tensor(expected, dtype=torch.float64) * weights)
    assert loss.label_counts.tolist() == seen
    # evaluation does not count; a checkpoint restores the counts
    loss.eval()
    loss(torch.randn(3, 4, dtype=torch.float64), torch.tensor([0, 0, 0]))
    assert loss.label_counts.tolist() == seen
    restored = DetLogitAdjustLoss(prior='online', num_classes=3)
    restored.load_state_dict(loss.state_dict())
    assert restored.label_counts.tolist() == seen


def test_online_prior_adds_every_ranks_labels(monkeypatch):
    """The batch counts go through all_reduce (two ranks with the same
    batch: twice the counts), so every rank has the same prior."""
    from mmlt.integrations.mmdet import det_logit_adjust_loss
    monkeypatch.setattr(det_logit_adjust_loss, 'all_reduce',
                        lambda tensor: tensor.mul_(2))
    loss = DetLogitAdjustLoss(prior='online', num_classes=2)
    loss(torch.randn(4, 3), torch.tensor([0, 0, 1, 2]))
    assert loss.label_counts.tolist() == [4.0, 2.0]


def test_online_prior_needs_num_classes():
    with pytest.raises(ValueError, match='num_classes'):
        DetLogitAdjustLoss(prior='online')
    with pytest.raises(ValueError, match='prior'):
        DetLogitAdjustLoss(prior='seesaw')
    loss = DetLogitAdjustLoss(prior='online', num_classes=3)
    with pytest.raises(ValueError, match='num_classes=3'):
        loss.set_class_counts([1, 2])
