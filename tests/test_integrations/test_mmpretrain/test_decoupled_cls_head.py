"""mmlt.DecoupledClsHead: cRT, tau-norm and LWS heads (Kang et al., ICLR
2020) against hand-computed logits, loading MMPretrain and mmlt
checkpoints, and the errors of a checkpoint that does not fit."""
import math

import pytest
import torch

pytest.importorskip('mmpretrain')

from mmengine.registry import MODELS, DefaultScope  # noqa: E402
from mmpretrain.structures import DataSample  # noqa: E402

# a 2-class classifier on 3-d features: rows of norm 5 and 1
W = torch.tensor([[3., 0., 4.], [0., 1., 0.]])
B = torch.tensor([0.5, -1.0])
X = torch.tensor([[1., 2., 3.], [-1., 0., 2.]])


def build(**kwargs):
    cfg = dict(type='mmlt.DecoupledClsHead', num_classes=2, in_channels=3)
    cfg.update(kwargs)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return MODELS.build(cfg)


def joint_state(bias=True):
    state = {'fc.weight': W.clone()}
    if bias:
        state['fc.bias'] = B.clone()
    return state


def test_tau_norm_by_hand():
    head = build(mode='tau_norm', keep_bias=True)
    head.load_state_dict(joint_state(), strict=False)
    plain = X @ W.t() + B
    head.set_tau(0.0)  # tau 0 with the bias: the joint classifier
    torch.testing.assert_close(head((X, )), plain)
    head.set_tau(1.0)  # tau 1: unit rows [0.6, 0, 0.8] and [0, 1, 0]
    unit = torch.tensor([[1 * .6 + 3 * .8, 2.], [-.6 + 2 * .8, 0.]])
    torch.testing.assert_close(head((X, )), unit + B)
    head = build(mode='tau_norm', tau=1.0)  # the bias dropped (default)
    head.load_state_dict(joint_state(), strict=False)
    torch.testing.assert_close(head((X, )), unit)
    head.set_tau(0.0)
    torch.testing.assert_close(head((X, )), X @ W.t())


def test_lws_starts_as_the_joint_classifier():
    head = build(mode='lws')
    head.load_state_dict(joint_state(), strict=False)
    torch.testing.assert_close(head((X, )), X @ W.t() + B)
    with torch.no_grad():
        head.scaling.scales.copy_(torch.tensor([2., 0.5]))
    torch.testing.assert_close(head((X, )),
                               (X @ W.t() + B) * torch.tensor([2., 0.5]))
    # only the scales learn
    trainable = [n for n, p in head.named_parameters() if p.requires_grad]
    assert trainable == ['scaling.scales']


def test_crt_trains_a_fresh_classifier():
    head = build(mode='crt')
    head.init_weights()
    assert head.fc.weight.std() < 0.05  # normal init, std 0.01
    samples = [DataSample().set_gt_label(y) for y in (0, 1)]
    loss = head.loss((X, ), samples)['loss']
    expected = torch.nn.functional.cross_entropy(head((X, )),
                                                 torch.tensor([0, 1]))
    torch.testing.assert_close(loss, expected)
    trainable = sorted(n for n, p in head.named_parameters()
                       if p.requires_grad)
    assert trainable == ['fc.bias', 'fc.weight']


def test_loads_an_mmpretrain_linear_head_checkpoint(tmp_path):
    """The classifier of an MMPretrain ImageClassifier with LinearClsHead
    loads through MMEngine's Pretrained init (prefix 'head.')."""
    from mmengine.runner import save_checkpoint
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        joint = MODELS.build(
            dict(type='ImageClassifier',
                 backbone=dict(type='mmlt.CifarResNet', depth=8),
                 neck=dict(type='GlobalAveragePooling'),
                 head=dict(type='LinearClsHead', num_classes=2,
                           in_channels=64)))
    joint.init_weights()
    path = str(tmp_path / 'joint.pth')
    save_checkpoint(joint.state_dict(), path)
    feats = torch.randn(4, 64)
    expected = joint.head((feats, ))
    pretrained = dict(type='Pretrained', checkpoint=path, prefix='head.')
    for extra in (dict(mode='lws'),
                  dict(mode='tau_norm', tau=0.0, keep_bias=True)):
        head = build(in_channels=64, init_cfg=pretrained, **extra)
        head.init_weights()
        assert head.classifier_loaded
        torch.testing.assert_close(head((feats, )), expected)


def test_tau_from_the_checkpoint_or_the_config():
    head = build(mode='tau_norm')
    head.load_state_dict(joint_state(), strict=False)
    assert not head.tau_is_set
    with pytest.raises(RuntimeError, match='tau_norm_search.py'):
        head((X, ))
    head.set_tau(0.7)
    state = head.state_dict()
    assert state['tau'].item() == pytest.approx(0.7)
    again = build(mode='tau_norm')
    again.load_state_dict(state)
    assert again.tau_is_set and again.tau.item() == pytest.approx(0.7)
    # a tau in the config wins over the checkpoint's
    fixed = build(mode='tau_norm', tau=0.25)
    fixed.load_state_dict(state)
    assert fixed.tau.item() == 0.25


def test_a_checkpoint_that_does_not_fit_is_an_error():
    with pytest.raises(ValueError, match="use mode='crt'"):
        build(mode='lws').load_state_dict({}, strict=False)
    with pytest.raises(ValueError, match="classifier='cosine'"):
        build(mode='lws').load_state_dict(joint_state(bias=False),
                                          strict=False)
    with pytest.raises(ValueError, match="classifier='linear'"):
        build(mode='lws', classifier='cosine').load_state_dict(
            joint_state(), strict=False)
    with pytest.raises(ValueError, match=r'shape \(2, 3\).*\(5, 3\)'):
        build(mode='lws', num_classes=5).load_state_dict(
            joint_state(), strict=False)
    # the joint head's training parts are dropped, not unexpected keys
    state = dict(joint_state(), log_prior=torch.zeros(2))
    state['loss_module.log_prior'] = torch.zeros(2)
    state['contrast_branch.projector.0.weight'] = torch.zeros(4, 3)
    result = build(mode='lws').load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    # anything else still is
    state['other.weight'] = torch.zeros(1)
    with pytest.raises(RuntimeError, match='other.weight'):
        build(mode='lws').load_state_dict(state, strict=True)


def test_bad_configurations():
    with pytest.raises(ValueError, match="mode='lws' or 'crt'"):
        build(mode='tau_norm', classifier='cosine')
    with pytest.raises(ValueError, match='mode'):
        build(mode='lws-norm')
    with pytest.raises(ValueError, match='tau'):
        build(mode='tau_norm', tau=-1.0)
    with pytest.raises(ValueError, match="prefix='head.'"):
        build(mode='lws').init_weights()
    head = build(mode='tau_norm', tau=1.0)
    head.load_state_dict(joint_state(), strict=False)
    with pytest.raises(RuntimeError, match='nothing to train'):
        head.loss((X, ), [DataSample().set_gt_label(0)] * 2)
    with pytest.raises(ValueError, match='GlobalAveragePooling'):
        head((torch.randn(2, 3, 4, 4), ))


def test_cosine_lws_scales_the_cosine_logits():
    head = build(mode='lws', classifier='cosine', cosine_scale=10.0)
    head.load_state_dict(joint_state(bias=False), strict=False)
    cos = torch.nn.functional.normalize(X, dim=1) @ torch.nn.functional.\
        normalize(W, dim=1).t()
    torch.testing.assert_close(head((X, )), 10.0 * cos)
    # only tau-norm heads hold a tau
    assert 'tau' not in head.state_dict()
    with pytest.raises(ValueError, match='tau-norm'):
        head.set_tau(1.0)
    with pytest.raises(ValueError, match='tau-norm'):
        build(mode='lws', tau=1.0)
    assert math.isnan(build(mode='tau_norm').tau.item())
