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
        r'reversed|n1500|n150)\.py', name)
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
        assert head.loss.type == 'mmlt.LogitAdjustLoss'
        assert cfg.train_cfg.max_iters == 250000
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
    else:
        assert cfg.model.backbone == dict(type='mmlt.WideResNet', depth=28,
                                          widen_factor=2)
        assert cfg.train_cfg.max_epochs * sampler.epoch_length == 250000
        optimizer = cfg.optim_wrapper.optimizer
        assert (optimizer.lr, optimizer.weight_decay, optimizer.nesterov) \
            == (0.03, 5e-4, True)
        assert 'EMAHook' in hooks
    # the metric's many/medium/few groups are the labeled split's
    assert 'unlabeled' not in cfg.val_evaluator.train_dataset
    assert cfg.val_evaluator.train_dataset.n_max == n_max


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
    """Tiny splits of the fake data, 2 labeled + 4 unlabeled per batch, one
    iteration, no validation."""
    small = dict(data_root=root, n_max=3, imb_factor=3)
    if 'max_iters' in cfg.train_cfg:
        cfg.train_dataloader.dataset.update(small)
        cfg.train_dataloader.batch_size = 2
        cfg.train_cfg.max_iters = 1
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
    if method.endswith('proco'):
        assert 'train/loss_contrast' in scalars
        counts = runner.model.head.contrast_branch.loss.estimator
        # both views of the 2 labeled samples, and any confident ones
        assert counts.current_counts.sum() >= 4
