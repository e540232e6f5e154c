"""The two-stage configs (configs/two_stage/): stage 1 trains no classifier,
stage 2 probes a frozen backbone; the frozen backbone and the stage-1 head
behave as documented."""
import os.path as osp

import pytest
import torch

pytest.importorskip('mmpretrain')

from mmengine.config import Config  # noqa: E402
from mmengine.registry import MODELS, DefaultScope  # noqa: E402

from mmlt.models.backbones import CifarResNet  # noqa: E402

CONFIG_DIR = osp.join(
    osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), 'configs',
    'two_stage')
LOSSES = dict(proco='mmlt.ProCoLoss', supcon='mmlt.SupConLoss',
              bcl='mmlt.BCLLoss')
SETTINGS = dict(fashionmnistlt=dict(depth=20, num_classes=10, epochs=8),
                r32_cifar100lt=dict(depth=32, num_classes=100, epochs=200))


def load(name):
    return Config.fromfile(osp.join(CONFIG_DIR, name))


@pytest.mark.parametrize('method', sorted(LOSSES))
@pytest.mark.parametrize('setting', sorted(SETTINGS))
def test_stage1_configs_train_the_contrastive_loss_alone(method, setting):
    cfg = load(f'{method}_stage1_{setting}.py')
    exp = SETTINGS[setting]
    head = cfg.model.head
    assert head.loss is None
    assert head.contrast_loss.type == LOSSES[method]
    assert head.contrast_loss.temperature == 0.1
    assert head.contrast_loss.loss_weight == 1.0
    assert cfg.model.backbone.depth == exp['depth']
    assert head.num_classes == exp['num_classes']
    assert cfg.train_cfg.max_epochs == exp['epochs']
    # two contrastive views, no classifier view
    multi_view = cfg.train_dataloader.dataset.pipeline[0]
    assert multi_view.type == 'MultiView' and multi_view.num_views == 2
    assert len(multi_view.transforms) == 1
    assert cfg.val_dataloader is None and cfg.val_evaluator is None
    hooks = [h['type'] for h in cfg.custom_hooks]
    assert 'mmlt.VMFWindowHook' in hooks and 'mmlt.ClassCountsHook' in hooks
    cosine = [s for s in cfg.param_scheduler
              if s.type == 'CosineAnnealingLR']
    for scheduler in cosine:
        assert scheduler.end == exp['epochs']


@pytest.mark.parametrize('setting', sorted(SETTINGS))
def test_probe_configs_freeze_a_pretrained_backbone(setting):
    cfg = load(f'linear-probe_{setting}.py')
    exp = SETTINGS[setting]
    backbone = cfg.model.backbone
    assert backbone.type == 'mmlt.CifarResNet'
    assert backbone.depth == exp['depth']
    assert backbone.frozen_stages == 3 and backbone.norm_eval
    assert backbone.init_cfg.type == 'Pretrained'
    assert backbone.init_cfg.prefix == 'backbone.'
    assert backbone.init_cfg.checkpoint.endswith(
        f'_stage1_{setting}/epoch_{exp["epochs"]}.pth')
    # pooled, then batch-normalised without affine parameters (MAE's probe)
    assert [n.type for n in cfg.model.neck] == ['GlobalAveragePooling',
                                                'ClsBatchNormNeck']
    assert not cfg.model.neck[1].get('affine', False)
    head = cfg.model.head
    assert head.type == 'LinearClsHead'
    assert head.num_classes == exp['num_classes']
    assert head.loss.type == 'CrossEntropyLoss'
    assert cfg.test_evaluator.type == 'mmlt.LongTailAccuracy'
    assert 'MultiView' not in [t['type'] for t in
                               cfg.train_dataloader.dataset.pipeline]


def test_frozen_backbone_has_no_gradients_and_keeps_bn_statistics():
    torch.manual_seed(0)
    backbone = CifarResNet(depth=8, frozen_stages=3, norm_eval=True)
    backbone.init_weights()
    backbone.train()
    assert not any(p.requires_grad for p in backbone.parameters())
    assert not any(m.training for m in backbone.modules()
                   if isinstance(m, torch.nn.BatchNorm2d))
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    out = backbone(torch.randn(4, 3, 16, 16))[0]
    assert not out.requires_grad  # no graph through the backbone
    after = backbone.state_dict()
    for key, value in before.items():
        assert torch.equal(after[key], value), key


def test_partly_frozen_backbone_trains_the_later_stages():
    backbone = CifarResNet(depth=8, frozen_stages=1)
    backbone.train()
    assert not backbone.stem.training and not backbone.stages[0].training
    assert backbone.stages[1].training and backbone.stages[2].training
    frozen = [p.requires_grad for p in backbone.stem.parameters()] + \
        [p.requires_grad for p in backbone.stages[0].parameters()]
    assert not any(frozen)
    assert all(p.requires_grad for p in backbone.stages[2].parameters())
    with pytest.raises(ValueError, match='frozen_stages'):
        CifarResNet(depth=8, frozen_stages=4)


@pytest.mark.parametrize('method', ['mmlt.SupConLoss', 'mmlt.BCLLoss'])
def test_stage1_head_contrasts_every_view(method):
    """With loss=None the head's loss is the branch's loss on all V views
    (the first included) and nothing else."""
    from mmpretrain.structures import DataSample
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        head = MODELS.build(
            dict(type='mmlt.ContrastiveClsHead', num_classes=3,
                 in_channels=8, proj_dims=(16, 6), loss=None,
                 contrast_loss=dict(type=method, temperature=0.1)))
    torch.manual_seed(0)
    labels = [0, 1, 2, 1]
    feats = torch.randn(2 * len(labels), 8)
    samples = [DataSample().set_gt_label(y) for y in labels]
    losses = head.loss((feats, ), samples)
    assert set(losses) == {'loss_contrast'}
    expected = head.contrast_branch(feats, torch.tensor(labels), 2,
                                    head.classifier_weight)
    torch.testing.assert_close(losses['loss_contrast'], expected)
    # ... which differs from contrasting the second view alone
    second_only = head.contrast_branch(feats[len(labels):],
                                       torch.tensor(labels), 1,
                                       head.classifier_weight)
    assert not torch.allclose(second_only, expected)
    losses['loss_contrast'].backward()
    if method == 'mmlt.BCLLoss':
        # the prototypes (from the classifier rows) learn through BCL alone;
        # no bias, which no loss would reach
        assert head.fc.bias is None
        assert head.fc.weight.grad.abs().sum() > 0
    else:
        assert head.fc is None
    # DDP's condition: every parameter the head holds gets a gradient
    unused = [name for name, p in head.named_parameters() if p.grad is None]
    assert unused == []


def test_stage1_head_loads_checkpoints_with_the_old_classifier():
    """Stage-1 checkpoints written when the head built an unused ``fc``
    load without unexpected keys."""
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        head = MODELS.build(
            dict(type='mmlt.ContrastiveClsHead', num_classes=3,
                 in_channels=8, proj_dims=(16, 6), loss=None,
                 contrast_loss=dict(type='mmlt.SupConLoss')))
    state = dict(head.state_dict())
    state['fc.weight'] = torch.zeros(3, 8)
    state['fc.bias'] = torch.zeros(3)
    result = head.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    with pytest.raises(RuntimeError, match='no classifier'):
        head.predict((torch.randn(2, 8), ))


def test_stage1_head_needs_something_to_train():
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        head = MODELS.build(
            dict(type='mmlt.ContrastiveClsHead', num_classes=3,
                 in_channels=8, loss=None))
    from mmpretrain.structures import DataSample
    with pytest.raises(ValueError, match='nothing to train'):
        head.loss((torch.randn(2, 8), ),
                  [DataSample().set_gt_label(0)] * 2)
