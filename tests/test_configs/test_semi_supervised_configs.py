"""configs/semi_supervised/: the protocols' settings, and one training
iteration of every config through a real Runner on fake data."""
import glob
import os.path as osp
import re

import pytest

pytest.importorskip('mmpretrain')

from fake_data import (write_fake_cifar,  # noqa: E402
                       write_fake_fashion_mnist)
from mmengine.config import Config  # noqa: E402

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG_DIR = osp.join(REPO, 'configs', 'semi_supervised')
CONFIGS = sorted(
    osp.basename(p) for p in glob.glob(osp.join(CONFIG_DIR, '*.py')))
FIXMATCH_LA_CIFAR10 = 'fixmatch-la_wrn28-2_cifar10lt-consistent.py'

# (labeled n_max, labeled IF, unlabeled n_max, unlabeled IF, classes)
PROTOCOLS = {
    'fashionmnistlt': (1000, 100, 2000, 100, 10),
    'cifar10lt': (1500, 100, 3000, 100, 10),
    'cifar100lt': (150, 10, 300, 10, 100),
}


def load(name):
    return Config.fromfile(osp.join(CONFIG_DIR, name))


def parse(name):
    match = re.match(
        r'(la|fixmatch|fixmatch-la|fixmatch-la-proco|fixmatch-la-debias|'
        r'fixmatch-la-debias-proco|fixmatch-la-acr|fixmatch-la-acr-proco)_'
        r'(?:wrn28-2_)?'
        r'(fashionmnistlt|cifar10lt|cifar100lt)-(consistent|uniform|'
        r'reversed|n1500|n150|n1000)\.py', name)
    assert match, name
    return match.groups()


def test_there_are_configs_for_every_method_and_protocol():
    parsed = {parse(name) for name in CONFIGS}
    for dataset in PROTOCOLS:
        for method in ('fixmatch', 'fixmatch-la', 'fixmatch-la-proco'):
            assert (method, dataset, 'consistent') in parsed
    for method in ('fixmatch', 'fixmatch-la', 'fixmatch-la-proco'):
        for profile in ('uniform', 'reversed'):
            assert (method, 'fashionmnistlt', profile) in parsed
            assert (method, 'cifar10lt', profile) in parsed
    assert ('la', 'cifar10lt', 'n1500') in parsed
    assert ('la', 'cifar100lt', 'n150') in parsed
    assert ('la', 'fashionmnistlt', 'n1000') in parsed
    # the distribution-aware methods on every Fashion-MNIST-LT split
    for method in ('fixmatch-la-debias', 'fixmatch-la-debias-proco',
                   'fixmatch-la-acr', 'fixmatch-la-acr-proco'):
        for profile in ('consistent', 'uniform', 'reversed'):
            assert (method, 'fashionmnistlt', profile) in parsed


@pytest.mark.parametrize('name', CONFIGS)
def test_protocol_settings(name):
    method, dataset, split = parse(name)
    cfg = load(name)
    n_max, imb, m_max, imb_u, classes = PROTOCOLS[dataset]
    head = cfg.model.head
    assert head.num_classes == classes
    if method == 'la':  # labeled data alone
        assert cfg.train_dataloader.dataset.n_max == n_max
        assert cfg.train_dataloader.dataset.imb_factor == imb
        assert 'unlabeled' not in cfg.train_dataloader.dataset
        assert head.loss.type == 'mmlt.LogitAdjustLoss'
        if dataset == 'fashionmnistlt':
            # the semi-supervised runs' schedule, labeled batch and EMA
            assert cfg.train_dataloader.batch_size == 64
            assert cfg.train_cfg.max_epochs == 20
            ema = [h for h in cfg.custom_hooks if h.type == 'EMAHook']
            assert len(ema) == 1 and ema[0].momentum == 0.01
            return
        assert cfg.train_cfg.max_iters == 250000
        assert cfg.train_cfg.val_interval == 500
        assert cfg.param_scheduler == [
            dict(type='mmlt.FixMatchCosineLR', fraction=7 / 16,
                 by_epoch=False)
        ]
        assert_cifar_recipe(cfg)
        return
    data = cfg.train_dataloader.dataset
    assert data.type == 'mmlt.SemiSupervisedDataset'
    for split_cfg in (data.labeled, data.unlabeled):
        assert split_cfg.n_max == n_max and split_cfg.imb_factor == imb
        assert split_cfg.get('seed', 0) == 0
    assert data.unlabeled.unlabeled == dict(n_max=m_max, imb_factor=imb_u,
                                            profile=split)
    assert 'unlabeled' not in data.labeled
    # B = 64 labeled + mu * B = 128 unlabeled per GPU
    sampler = cfg.train_dataloader.sampler
    assert sampler.type == 'mmlt.MultiSourceSampler'
    assert sampler.source_ratio == [1, 2]
    assert sampler.batch_size == cfg.train_dataloader.batch_size == 192
    assert head.type == 'mmlt.FixMatchClsHead'
    assert head.threshold == 0.95 and head.unlabeled_weight == 1.0
    expected_loss = 'CrossEntropyLoss' if method == 'fixmatch' else \
        'mmlt.LogitAdjustLoss'
    assert head.loss.type == expected_loss
    proco = head.get('contrast_loss')
    assert (proco is not None) == method.endswith('proco')
    if proco is not None:
        assert proco.type == 'mmlt.ProCoLoss'
        assert proco.temperature == 0.1
        # the prior of ProCo's own samples (labeled + kept pseudo-labels)
        assert proco.prior == 'estimator'
    expected_mode = {'debias': 'estimated', 'acr': 'adaptive'}.get(
        method.split('-')[2] if method.count('-') >= 2 else '', 'none')
    assert head.get('unlabeled_prior', {}).get('mode', 'none') == \
        expected_mode
    hooks = [h.type for h in cfg.custom_hooks]
    assert 'mmlt.SemiSupervisedHook' in hooks
    assert 'mmlt.ClassCountsHook' in hooks
    if dataset == 'fashionmnistlt':
        assert cfg.model.backbone.type == 'mmlt.CifarResNet'
        assert cfg.train_cfg.max_epochs == 20
        # the EMA model is evaluated; decay 0.99 suits 760 iterations
        ema = [h for h in cfg.custom_hooks if h.type == 'EMAHook']
        assert len(ema) == 1 and ema[0].momentum == 0.01
        assert ema[0].priority == 'ABOVE_NORMAL'
    else:
        assert cfg.model.backbone == dict(type='mmlt.WideResNet', depth=28,
                                          widen_factor=2)
        assert cfg.train_cfg.max_epochs * sampler.epoch_length == 250000
        # an evaluation every 500 iterations: the median / mean of the
        # last 20 are reported (seed_study.py --last-k 20)
        assert sampler.epoch_length == 500
        assert cfg.train_cfg.val_interval == 1
        assert cfg.param_scheduler == [
            dict(type='mmlt.FixMatchCosineLR', fraction=7 / 16,
                 by_epoch=True, convert_to_iter_based=True)
        ]
        assert_cifar_recipe(cfg)
    # FixMatch's RandAugment in the strong view, then Cutout
    weak, strong = cfg.train_dataloader.dataset.labeled.pipeline[0][
        'transforms']
    assert strong[:len(weak)] == weak
    assert [t['type'] for t in strong[len(weak):]] == [
        'mmlt.RandAugmentMC', 'Cutout'
    ]
    assert strong[len(weak)]['num_ops'] == 2
    assert strong[len(weak)]['magnitude'] == 10
    # the metric's many/medium/few groups are the labeled split's
    assert 'unlabeled' not in cfg.val_evaluator.train_dataset
    assert cfg.val_evaluator.train_dataset.n_max == n_max


def assert_cifar_recipe(cfg):
    """SGD as FixMatch (no weight decay on BatchNorm and biases), the EMA
    model evaluated, and the two named learning-rate schedules."""
    optimizer = cfg.optim_wrapper.optimizer
    assert (optimizer.lr, optimizer.weight_decay, optimizer.nesterov) \
        == (0.03, 5e-4, True)
    assert cfg.optim_wrapper.paramwise_cfg == dict(norm_decay_mult=0.0,
                                                   bias_decay_mult=0.0)
    ema = [h for h in cfg.custom_hooks if h.type == 'EMAHook']
    assert len(ema) == 1 and ema[0].momentum == 0.001
    assert cfg.daso_constant == [
        dict(type='ConstantLR', factor=1.0, by_epoch=True)
    ]
    assert cfg.default_hooks.checkpoint.max_keep_ckpts <= 2


def test_no_weight_decay_on_norms_and_biases():
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS
    from torch import nn

    from mmlt.engine import SkipNonFiniteOptimWrapper

    cfg = load('fixmatch-la-proco_wrn28-2_cifar10lt-consistent.py')
    init_default_scope('mmpretrain')
    model = MODELS.build(cfg.model)
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    assert isinstance(wrapper, SkipNonFiniteOptimWrapper)
    decay = {
        id(p): group['weight_decay']
        for group in wrapper.optimizer.param_groups for p in group['params']
    }
    assert len(decay) == len(list(model.parameters()))
    counts = dict(norm=0, bias=0, weight=0)
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                kind = 'norm'
            elif name == 'bias':
                kind = 'bias'
            else:
                assert isinstance(module, (nn.Conv2d, nn.Linear)), module
                kind = 'weight'
            counts[kind] += 1
            assert decay[id(param)] == (5e-4 if kind == 'weight' else 0.0)
    assert min(counts.values()) > 0, counts


def test_the_daso_schedule_switches_in_one_line(tmp_path):
    path = tmp_path / 'daso.py'
    path.write_text(
        f"_base_ = '{osp.join(CONFIG_DIR, FIXMATCH_LA_CIFAR10)}'\n"
        'param_scheduler = _base_.daso_constant\n')
    cfg = Config.fromfile(str(path))
    assert cfg.param_scheduler == [
        dict(type='ConstantLR', factor=1.0, by_epoch=True)
    ]


@pytest.fixture(scope='module')
def fake_roots(tmp_path_factory):
    base = tmp_path_factory.mktemp('fake_ssl_data')
    return dict(
        cifar10lt=write_fake_cifar(str(base / 'c10'), 10, per_class=2) or
        str(base / 'c10'),
        cifar100lt=write_fake_cifar(str(base / 'c100'), 100, per_class=8) or
        str(base / 'c100'),
        fashionmnistlt=write_fake_fashion_mnist(str(base / 'fmnist')))


def on_fake_data(cfg, dataset, root):
    """Tiny splits of the fake data, one iteration (2 labeled + 4 unlabeled
    images; the supervised baselines: labeled images only), no validation."""
    small = dict(data_root=root, n_max=3, imb_factor=3)
    if cfg.train_dataloader.dataset.type != 'mmlt.SemiSupervisedDataset':
        cfg.train_dataloader.dataset.update(small)
        if 'max_iters' in cfg.train_cfg:
            cfg.train_dataloader.batch_size = 2
            cfg.train_cfg.max_iters = 1
        else:  # one epoch of one batch holding the whole tiny split
            cfg.train_dataloader.batch_size = 64
            cfg.train_cfg.max_epochs = 1
    else:
        data = cfg.train_dataloader.dataset
        data.labeled.update(small)
        data.unlabeled.update(small)
        data.unlabeled.unlabeled.update(n_max=4, imb_factor=2)
        cfg.train_dataloader.batch_size = 6
        cfg.train_dataloader.sampler.batch_size = 6
        cfg.train_dataloader.sampler.epoch_length = 1
        cfg.train_cfg.max_epochs = 1
    cfg.train_cfg.val_begin = 2  # after the last epoch or iteration
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].num_workers = 0
        cfg[loader].persistent_workers = False
    cfg.val_dataloader.dataset.data_root = root
    cfg.val_evaluator.train_dataset.update(small)
    cfg.default_hooks.checkpoint.interval = 1000
    cfg.default_hooks.logger.interval = 1
    return cfg


def _step_groups():
    """One iteration per (dataset, method): split variants train alike."""
    groups = {}
    for name in CONFIGS:
        method, dataset, split = parse(name)
        groups.setdefault((method, dataset), name)
    return sorted(groups.values())


@pytest.mark.slow
@pytest.mark.parametrize('name', _step_groups())
def test_one_iteration_on_fake_data(name, fake_roots, tmp_path):
    import torch
    from mmengine.runner import Runner

    method, dataset, _ = parse(name)
    cfg = on_fake_data(load(name), dataset, fake_roots[dataset])
    cfg.work_dir = str(tmp_path)
    cfg.experiment_name = f'ssl_{method}_{dataset}'
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert runner.iter == 1
    scalars = runner.message_hub.log_scalars
    assert 'train/loss_cls' in scalars
    if method != 'la':
        for key in ('train/loss_unlabeled', 'train/pl_mask_rate',
                    'train/pl_acc_few'):
            assert key in scalars, key
    # ClassCountsHook set the priors before EMAHook copied the model: the
    # averaged copy (evaluated) holds the same ones
    ema = [h.ema_model.module for h in runner.hooks
           if type(h).__name__ == 'EMAHook']
    assert len(ema) == 1
    priors = {
        name: buffer
        for name, buffer in runner.model.named_buffers()
        if name.endswith('log_prior') and buffer.numel()
    }
    ema_buffers = dict(ema[0].named_buffers())
    for name, buffer in priors.items():
        assert torch.equal(ema_buffers[name], buffer), name
    if method != 'fixmatch':
        assert priors, 'no class prior to check'
    if method.endswith('proco'):
        assert 'train/loss_contrast' in scalars
        counts = runner.model.head.contrast_branch.loss.estimator
        # both views of the 2 labeled samples, and any confident ones
        assert counts.current_counts.sum() >= 4
