"""The decoupled-classifier configs (configs/decoupled/, Kang et al., ICLR
2020): what they freeze, load, sample and validate on, and one real
training step of cRT and LWS from a joint checkpoint."""
import os.path as osp

import pytest
import torch

pytest.importorskip('mmpretrain')

from mmengine.config import Config  # noqa: E402
from mmengine.registry import MODELS, DefaultScope  # noqa: E402

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG_DIR = osp.join(REPO, 'configs', 'decoupled')
SETTINGS = {
    'fashionmnistlt': dict(stage1='ce_fashionmnistlt/epoch_20.pth',
                           frozen_stages=3, num_classes=10),
    'r50_imagenetlt': dict(stage1='ce-linear_r50_imagenetlt/epoch_90.pth',
                           frozen_stages=4, num_classes=1000),
}


def load(name):
    return Config.fromfile(osp.join(CONFIG_DIR, name))


@pytest.mark.parametrize('setting', sorted(SETTINGS))
@pytest.mark.parametrize('method', ['crt', 'lws', 'taunorm'])
def test_classifier_stage_configs(method, setting):
    cfg = load(f'{method}_{setting}.py')
    exp = SETTINGS[setting]
    assert cfg.stage1_checkpoint == f'work_dirs/{exp["stage1"]}'
    backbone = cfg.model.backbone
    assert backbone.frozen_stages == exp['frozen_stages']
    assert backbone.norm_eval
    head = cfg.model.head
    assert head.type == 'mmlt.DecoupledClsHead'
    assert head.mode == dict(taunorm='tau_norm').get(method, method)
    assert head.num_classes == exp['num_classes']
    # chosen on a validation split, never on the test set
    val, test = cfg.val_dataloader.dataset, cfg.test_dataloader.dataset
    assert val != test
    if setting == 'fashionmnistlt':
        assert (val.split, test.split) == ('val', 'test')
        assert val.n_val_per_class == 100
        assert {k: val[k] for k in ('n_max', 'imb_factor', 'seed')} == \
            dict(n_max=1000, imb_factor=100, seed=0)
    else:
        assert val.ann_file.endswith('ImageNet_LT_val.txt')
    if method == 'taunorm':
        assert cfg.train_cfg is None and cfg.optim_wrapper is None
        assert head.get('tau') is None  # chosen by the search
        return
    assert backbone.init_cfg == dict(type='Pretrained',
                                     checkpoint=cfg.stage1_checkpoint,
                                     prefix='backbone.')
    if method == 'lws':
        assert head.init_cfg.checkpoint == cfg.stage1_checkpoint
        assert head.init_cfg.prefix == 'head.'
    assert cfg.train_dataloader.sampler.type == 'mmlt.ClassAwareSampler'
    assert cfg.train_cfg.max_epochs == 10
    hooks = {h['type']: h for h in cfg.custom_hooks}
    assert hooks['mmlt.ClassCountsHook']['prior'] == 'stream'


def test_imagenet_joint_stage_has_a_linear_classifier():
    cfg = load('ce-linear_r50_imagenetlt.py')
    base = Config.fromfile(osp.join(REPO, 'configs', 'ce_r50_imagenetlt.py'))
    assert cfg.model.head.classifier == 'linear'
    assert base.model.head.classifier == 'cosine'
    cfg.model.head.classifier = 'cosine'
    assert cfg.model == base.model  # nothing else differs


def _build(cfg_model):
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return MODELS.build(cfg_model)


def _joint_checkpoint(tmp_path):
    """A CE model of configs/ce_fashionmnistlt.py with non-trivial BN
    statistics, saved as a checkpoint."""
    from mmengine.runner import save_checkpoint
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'ce_fashionmnistlt.py'))
    torch.manual_seed(0)
    joint = _build(cfg.model)
    joint.init_weights()
    for module in joint.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    path = str(tmp_path / 'ce.pth')
    save_checkpoint(dict(state_dict=joint.state_dict()), path)
    return joint.state_dict(), path


def _one_step(method, tmp_path):
    """The config's model from a joint checkpoint, before and after one
    training step with the config's optimizer."""
    from mmengine.optim import build_optim_wrapper
    from mmpretrain.structures import DataSample
    joint, path = _joint_checkpoint(tmp_path)
    cfg = load(f'{method}_fashionmnistlt.py')
    cfg.model.backbone.init_cfg.checkpoint = path
    if method == 'lws':
        cfg.model.head.init_cfg.checkpoint = path
    model = _build(cfg.model)
    model.init_weights()
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    generator = torch.Generator().manual_seed(1)
    data = dict(
        inputs=[torch.randint(0, 256, (3, 28, 28), dtype=torch.uint8,
                              generator=generator) for _ in range(8)],
        data_samples=[DataSample().set_gt_label(i % 10) for i in range(8)])
    model.train_step(data, optim_wrapper)
    return joint, before, model.state_dict()


def _changed(before, after, prefix):
    return sorted(k for k in before if k.startswith(prefix)
                  and not torch.equal(before[k], after[k]))


def test_crt_step_trains_only_the_new_classifier(tmp_path):
    joint, before, after = _one_step('crt', tmp_path)
    # the backbone is the joint one, and one step leaves it (weights and
    # BatchNorm statistics) exactly as it was
    for key, value in before.items():
        if key.startswith('backbone.'):
            assert torch.equal(value, joint[key]), key
    assert _changed(before, after, 'backbone.') == []
    # the classifier is new (not the joint one) and learns
    assert not torch.equal(before['head.fc.weight'], joint['head.fc.weight'])
    assert _changed(before, after, 'head.') == ['head.fc.bias',
                                                'head.fc.weight']


def test_lws_step_trains_only_the_scales(tmp_path):
    joint, before, after = _one_step('lws', tmp_path)
    for key in ('head.fc.weight', 'head.fc.bias'):
        assert torch.equal(before[key], joint[key])
    assert torch.equal(before['head.scaling.scales'], torch.ones(10))
    assert _changed(before, after, 'backbone.') == []
    assert _changed(before, after, 'head.') == ['head.scaling.scales']


def test_training_a_post_hoc_config_says_what_to_run_instead():
    from tools.train import main
    with pytest.raises(ValueError, match='tau_norm_search.py'):
        main([osp.join(CONFIG_DIR, 'taunorm_fashionmnistlt.py')])
