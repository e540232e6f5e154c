"""Every classification config in configs/ loads, has the papers'
hyper-parameters, builds, trains one step, and its data pipelines run.

Configs of other parts (``pcl_*`` self-supervised, LVIS detection, the
two-stage and decoupled configs) are tested elsewhere. The training step runs
on random tensors of each config's view count; ResNet-50/ResNeXt-50 configs
take 32x32 inputs instead of 224x224 to keep the step fast on a CPU: the
backbone downsamples by 32 and the head sees globally pooled features, so the
model does not depend on the input size (the pipelines are checked at their
real size, 224, separately).
Expected values are the papers' settings (ProCo: Du et al., TPAMI 2024; BCL:
Zhu et al., CVPR 2022), summarised in docs/methods.md.
"""
import glob
import math
import os
import os.path as osp

import numpy as np
import pytest
import torch

pytest.importorskip('mmpretrain')

from fake_data import (write_fake_cifar,  # noqa: E402
                       write_fake_fashion_mnist)
from mmengine.config import Config  # noqa: E402
from mmengine.dataset import pseudo_collate  # noqa: E402
from mmengine.registry import (DATA_SAMPLERS, DATASETS, METRICS,  # noqa: E402
                               MODELS, TRANSFORMS, DefaultScope)

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG_DIR = osp.join(REPO_ROOT, 'configs')


def _is_classification_config(path):
    rel = osp.relpath(path, CONFIG_DIR)
    parts = rel.split(os.sep)
    name = parts[-1]
    # two_stage/: tests/test_configs/test_two_stage_configs.py;
    # semi_supervised/: tests/test_configs/test_semi_supervised_configs.py;
    # decoupled/: tests/test_configs/test_decoupled_configs.py
    return ('_base_' not in parts and 'lvis' not in parts
            and 'two_stage' not in parts and 'semi_supervised' not in parts
            and 'decoupled' not in parts
            and not name.startswith('pcl_')
            and 'lvis' not in name)


CONFIGS = sorted(
    osp.relpath(p, CONFIG_DIR)
    for p in glob.glob(osp.join(CONFIG_DIR, '**', '*.py'), recursive=True)
    if _is_classification_config(p))


def load(name):
    return Config.fromfile(osp.join(CONFIG_DIR, name))


# ---------------------------------------------------------------- expected
# cifar: ProCo's CIFAR recipe; imagenet: ProCo's/BCL's ImageNet-LT recipe;
# fashion: the CPU demo (proco_fashionmnistlt.py, kept as it is).
# Normalisation of the reference code: (mean, std) in [0, 1] units, RGB.
CIFAR_STATS = ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))
IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
INAT_STATS = ((0.466, 0.471, 0.380), (0.195, 0.194, 0.192))

_CIFAR = dict(
    backbone=('mmlt.CifarResNet', 32), in_channels=64, proj_dims=(512, 128),
    classifier='linear', lr=0.3, weight_decay=2e-4, epochs=200,
    batch_size=256, schedule='step', crop=32, stats=CIFAR_STATS,
    to_rgb=False)
_IMAGENET = dict(
    backbone=('ResNet', 50), in_channels=2048, proj_dims=(2048, 1024),
    classifier='cosine', lr=0.1, weight_decay=5e-4, epochs=90, batch_size=32,
    schedule='cosine', crop=224, stats=IMAGENET_STATS, to_rgb=True)
_FASHION = dict(
    backbone=('mmlt.CifarResNet', 20), in_channels=64, proj_dims=(512, 128),
    classifier='linear', lr=0.1, weight_decay=5e-4, epochs=20, batch_size=64,
    schedule='cosine', crop=28, num_classes=10)
_PROCO_CIFAR = dict(contrast=('mmlt.ProCoLoss', 0.1), weight=1.0, cls_tau=1.)
_PROCO_IN = dict(contrast=('mmlt.ProCoLoss', 0.07), weight=1.0, cls_tau=1.)
_CE = dict(contrast=None, cls_tau=0.)
_LA = dict(contrast=None, cls_tau=1.)

EXPECTED = {
    'proco_r32_cifar100lt.py': dict(_CIFAR, **_PROCO_CIFAR, num_classes=100),
    'proco_r32_cifar10lt.py': dict(_CIFAR, **_PROCO_CIFAR, num_classes=10),
    'bcl_r32_cifar100lt.py': dict(
        _CIFAR, contrast=('mmlt.BCLLoss', 0.1), weight=2.0, cls_tau=1.,
        num_classes=100),
    'ce_r32_cifar100lt.py': dict(_CIFAR, **_CE, num_classes=100),
    'la_r32_cifar100lt.py': dict(_CIFAR, **_LA, num_classes=100),
    'proco_r50_imagenetlt.py': dict(_IMAGENET, **_PROCO_IN, num_classes=1000),
    'proco_r50_imagenetlt_180e.py': dict(
        _IMAGENET, **_PROCO_IN, num_classes=1000, epochs=180),
    'proco_x50_imagenetlt.py': dict(
        _IMAGENET, **_PROCO_IN, num_classes=1000, backbone=('ResNeXt', 50)),
    'proco_r50_inat2018.py': dict(
        _IMAGENET, **_PROCO_IN, num_classes=8142, lr=0.2,
        weight_decay=1e-4, stats=INAT_STATS),
    # Not from a paper (see the config): an untuned fine-tuning start point.
    'proco_r50_placeslt.py': dict(
        _IMAGENET, **_PROCO_IN, num_classes=365, lr=0.01, epochs=30),
    'bcl_r50_imagenetlt.py': dict(
        _IMAGENET, contrast=('mmlt.BCLLoss', 0.07), weight=0.35, cls_tau=1.,
        num_classes=1000),
    'ce_r50_imagenetlt.py': dict(_IMAGENET, **_CE, num_classes=1000),
    'ce_r50_imagenetlt_cas.py': dict(
        _IMAGENET, **_CE, num_classes=1000,
        sampler='mmlt.ClassAwareSampler'),
    'la_r50_imagenetlt.py': dict(_IMAGENET, **_LA, num_classes=1000),
    'proco_fashionmnistlt.py': dict(_FASHION, **_PROCO_CIFAR),
    'bcl_fashionmnistlt.py': dict(
        _FASHION, contrast=('mmlt.BCLLoss', 0.1), weight=2.0, cls_tau=1.),
    'ce_fashionmnistlt.py': dict(_FASHION, **_CE),
    'la_fashionmnistlt.py': dict(_FASHION, **_LA),
}


def train_pipeline(cfg):
    return cfg.train_dataloader.dataset.pipeline


def num_views(cfg):
    """Views per image: the MultiView total, 1 without MultiView."""
    for t in train_pipeline(cfg):
        if t['type'] == 'MultiView':
            views = t['num_views']
            return sum(views) if isinstance(views, (list, tuple)) else views
    return 1


def test_every_config_has_expectations():
    assert len(CONFIGS) >= len(EXPECTED)
    assert sorted(CONFIGS) == sorted(EXPECTED), (
        'add the hyper-parameters of new configs to EXPECTED')


@pytest.mark.parametrize('name', CONFIGS)
def test_hyper_parameters(name):
    cfg = load(name)
    exp = EXPECTED[name]
    assert cfg.default_scope == 'mmpretrain'
    backbone = cfg.model.backbone
    assert (backbone.type, backbone.depth) == exp['backbone']
    if backbone.type == 'ResNeXt':
        assert (backbone.groups, backbone.width_per_group) == (32, 4)
    head = cfg.model.head
    assert head.type == 'mmlt.ContrastiveClsHead'
    assert head.num_classes == exp['num_classes']
    assert head.in_channels == exp['in_channels']
    assert tuple(head.proj_dims) == exp['proj_dims']
    assert head.get('classifier', 'linear') == exp['classifier']
    if exp['classifier'] == 'cosine':
        assert head.cosine_scale == 30.0
    assert head.loss.type == 'mmlt.LogitAdjustLoss'
    assert head.loss.tau == exp['cls_tau']
    contrast = head.get('contrast_loss')
    if exp['contrast'] is None:
        assert contrast is None
        assert num_views(cfg) == 1
    else:
        assert (contrast.type, contrast.temperature) == exp['contrast']
        assert contrast.loss_weight == exp['weight']
        assert 'contrast_weight' not in head  # one weight per term
        # one classifier view + two contrastive views
        assert num_views(cfg) == 3

    optimizer = cfg.optim_wrapper.optimizer
    assert optimizer.type == 'SGD'
    assert optimizer.lr == exp['lr']
    assert optimizer.momentum == 0.9
    assert optimizer.weight_decay == exp['weight_decay']
    assert cfg.train_cfg.max_epochs == exp['epochs']
    assert cfg.train_dataloader.batch_size == exp['batch_size']
    if exp['batch_size'] != 64:
        # The lrs of the papers are for a total batch of 256.
        assert cfg.auto_scale_lr.base_batch_size == 256
    schedulers = cfg.param_scheduler
    if exp['schedule'] == 'step':
        warmup, step = schedulers
        # lr * (epoch + 1) / 5 over epochs 0-4, as in the reference code
        assert warmup.type == 'LinearLR' and warmup.by_epoch
        assert (warmup.begin, warmup.end, warmup.start_factor) == (0, 5, 0.2)
        assert step.type == 'MultiStepLR'
        assert list(step.milestones) == [160, 180] and step.gamma == 0.1
    else:
        cosine = schedulers[-1]
        assert cosine.type == 'CosineAnnealingLR'
        assert cosine.end == exp['epochs']
        assert cosine.T_max == cosine.end - cosine.begin
    if 'stats' in exp:
        preprocessor = cfg.data_preprocessor
        assert preprocessor.type == 'mmlt.MultiViewDataPreprocessor'
        assert preprocessor.to_rgb == exp['to_rgb']
        mean, std = exp['stats']
        np.testing.assert_allclose(preprocessor.mean, np.multiply(mean, 255))
        np.testing.assert_allclose(preprocessor.std, np.multiply(std, 255))
        assert cfg.train_dataloader.drop_last
    sampler = cfg.train_dataloader.sampler['type']
    assert sampler == exp.get('sampler', 'mmlt.ResumableSampler')
    hook_types = [h['type'] for h in cfg.custom_hooks]
    assert 'mmlt.ClassCountsHook' in hook_types
    assert 'mmlt.VMFWindowHook' in hook_types


# ------------------------------------------------------ one training step
def _step_groups():
    """Configs grouped by identical model and view count (e.g. the 90- and
    180-epoch ImageNet-LT configs): one training step per group."""
    groups = {}
    for name in CONFIGS:
        cfg = load(name)
        key = (repr(cfg.model.to_dict()), num_views(cfg))
        groups.setdefault(key, []).append(name)
    return [names for names in groups.values()]


def _first_backbone_parameter(model):
    return next(p for p in model.backbone.parameters() if p.requires_grad)


@pytest.mark.slow
@pytest.mark.parametrize(
    'names', _step_groups(), ids=lambda names: '+'.join(names))
def test_one_training_step(names):
    from mmpretrain.structures import DataSample

    cfg = load(names[0])
    views = num_views(cfg)
    crop = EXPECTED[names[0]]['crop']
    size = 32 if crop == 224 else crop  # see the module docstring
    num_classes = cfg.model.head.num_classes
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model_cfg = cfg.model.copy()
        # What the Runner does with a top-level data_preprocessor.
        model_cfg.setdefault('data_preprocessor', cfg.get('data_preprocessor'))
        model = MODELS.build(model_cfg)
    # What ClassCountsHook does before training: a long-tailed profile.
    counts = torch.round(500 * 0.01**(torch.arange(num_classes) /
                                      max(num_classes - 1, 1))) + 1
    for module in model.modules():
        if callable(getattr(module, 'set_class_counts', None)):
            module.set_class_counts(counts)
    model.train()

    batch = 2 if views > 1 else 4
    labels = torch.randint(0, num_classes, (batch, ))
    images = [[
        torch.randint(0, 256, (3, size, size), dtype=torch.uint8)
        for _ in range(batch)
    ] for _ in range(views)]
    data = dict(
        # pseudo_collate's layout: a list of views, each a list of samples
        inputs=images if views > 1 else images[0],
        data_samples=[DataSample().set_gt_label(int(y)) for y in labels])
    data = model.data_preprocessor(data, True)
    assert tuple(data['inputs'].shape) == (views * batch, 3, size, size)
    losses = model(**data, mode='loss')

    contrastive = cfg.model.head.get('contrast_loss') is not None
    expected_keys = {'loss_cls', 'accuracy_top-1'}
    if contrastive:
        expected_keys.add('loss_contrast')
    assert set(losses) == expected_keys
    for key, value in losses.items():
        assert torch.isfinite(value).all(), (key, value)
    assert losses['loss_cls'] > 0

    first = _first_backbone_parameter(model)
    if contrastive:
        assert losses['loss_contrast'] > 0
        # The contrastive branch alone trains the backbone.
        (grad, ) = torch.autograd.grad(
            losses['loss_contrast'], first, retain_graph=True)
        assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    total = sum(v for k, v in losses.items() if k.startswith('loss'))
    total.backward()
    assert first.grad is not None
    assert torch.isfinite(first.grad).all() and first.grad.abs().sum() > 0
    head = model.head
    assert head.fc.weight.grad is not None
    assert head.fc.weight.grad.abs().sum() > 0
    if contrastive:
        projector_grad = head.contrast_branch.projector[0].weight.grad
        assert projector_grad is not None and projector_grad.abs().sum() > 0
        if cfg.model.head.contrast_loss.type == 'mmlt.BCLLoss':
            proto_grad = head.contrast_branch.prototype_mlp[0].weight.grad
            assert proto_grad is not None and proto_grad.abs().sum() > 0
    else:
        assert head.contrast_branch is None


# ------------------------------------------------ pipelines on fake data
_SPLIT_FILES = {
    'mmlt.ImageNetLT': 'ImageNet_LT',
    'mmlt.PlacesLT': 'Places_LT',
    'mmlt.INaturalist2018': 'iNaturalist18',
}


def _write_image_lists(root, seed=0):
    import mmcv
    rng = np.random.RandomState(seed)
    lines = []
    for i, label in enumerate([0, 1, 2, 2]):
        rel = f'train/c{label}/img{i}.jpg'
        # Not square and smaller than the crop, like many real images.
        img = rng.randint(0, 256, (150 + 10 * i, 120, 3)).astype(np.uint8)
        mmcv.imwrite(img, osp.join(root, rel))
        lines.append(f'{rel} {label}')
    os.makedirs(osp.join(root, 'meta'))
    for stem in _SPLIT_FILES.values():
        for split in ('train', 'val', 'test'):
            with open(osp.join(root, 'meta', f'{stem}_{split}.txt'),
                      'w') as f:
                f.write('\n'.join(lines) + '\n')


@pytest.fixture(scope='module')
def fake_roots(tmp_path_factory):
    base = tmp_path_factory.mktemp('fake_lt_data')
    roots = {
        'mmlt.CIFAR100LT': str(base / 'cifar100'),
        'mmlt.CIFAR10LT': str(base / 'cifar10'),
        'mmlt.FashionMNISTLT': str(base / 'fashion'),
        'lists': str(base / 'lists'),
    }
    write_fake_cifar(roots['mmlt.CIFAR100LT'], 100)
    write_fake_cifar(roots['mmlt.CIFAR10LT'], 10)
    write_fake_fashion_mnist(roots['mmlt.FashionMNISTLT'])
    _write_image_lists(roots['lists'])
    return roots


def _on_fake_data(dataset_cfg, roots):
    """The config's dataset with data_root on the fake copy; the LT subsets
    shrunk to the fake data's 4 (CIFAR) / 30 (Fashion) images per class."""
    dataset_cfg = dict(dataset_cfg)
    dataset_type = dataset_cfg['type']
    if dataset_type in _SPLIT_FILES:
        dataset_cfg['data_root'] = roots['lists']
        return dataset_cfg
    dataset_cfg['data_root'] = roots[dataset_type]
    if dataset_cfg.get('split', 'train') == 'train':
        dataset_cfg.update(n_max=4, imb_factor=2)
    return dataset_cfg


@pytest.mark.slow
@pytest.mark.parametrize('name', CONFIGS)
def test_pipelines_on_fake_data(name, fake_roots):
    cfg = load(name)
    exp = EXPECTED[name]
    crop, views = exp['crop'], num_views(cfg)
    np.random.seed(0)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        train_set = DATASETS.build(
            _on_fake_data(cfg.train_dataloader.dataset, fake_roots))
        assert train_set.num_classes == exp['num_classes']
        samples = [train_set[i] for i in range(2)]
        for sample in samples:
            inputs = sample['inputs']
            if views > 1:
                assert isinstance(inputs, list) and len(inputs) == views
            else:
                inputs = [inputs]
            for view in inputs:
                assert tuple(view.shape) == (3, crop, crop)
                assert view.dtype == torch.uint8
            assert 0 <= int(sample['data_samples'].gt_label) < \
                exp['num_classes']
        # The data preprocessor stacks the collated views view-major.
        preprocessor = MODELS.build(cfg.data_preprocessor)
        batch = preprocessor(pseudo_collate(samples), True)
        assert tuple(batch['inputs'].shape) == (views * 2, 3, crop, crop)
        assert batch['inputs'].dtype == torch.float32
        assert torch.isfinite(batch['inputs']).all()

        sampler_cfg = dict(cfg.train_dataloader.sampler)
        sampler = DATA_SAMPLERS.build(
            dict(sampler_cfg, dataset=train_set, seed=0))
        indices = list(iter(sampler))
        assert len(indices) == len(train_set)
        assert all(0 <= i < len(train_set) for i in indices)

        for loader in ('val_dataloader', 'test_dataloader'):
            test_set = DATASETS.build(
                _on_fake_data(cfg[loader].dataset, fake_roots))
            test_inputs = test_set[0]['inputs']
            assert tuple(test_inputs.shape) == (3, crop, crop)
        evaluator = dict(cfg.val_evaluator)
        evaluator['train_dataset'] = _on_fake_data(evaluator['train_dataset'],
                                                   fake_roots)
        metric = METRICS.build(evaluator)
        assert metric.num_classes == exp['num_classes']


# ------------------------------------------------- augmentation policies
# AutoAugment's CIFAR-10 policy as printed in Cubuk et al. (CVPR 2019),
# appendix: (operation, probability, magnitude level 0-9) pairs.
PAPER_CIFAR10_POLICY = [
    (('Invert', 0.1, 7), ('Contrast', 0.2, 6)),
    (('Rotate', 0.7, 2), ('TranslateX', 0.3, 9)),
    (('Sharpness', 0.8, 1), ('Sharpness', 0.9, 3)),
    (('ShearY', 0.5, 8), ('TranslateY', 0.7, 9)),
    (('AutoContrast', 0.5, 8), ('Equalize', 0.9, 2)),
    (('ShearY', 0.2, 7), ('Posterize', 0.3, 7)),
    (('Color', 0.4, 3), ('Brightness', 0.6, 7)),
    (('Sharpness', 0.3, 9), ('Brightness', 0.7, 9)),
    (('Equalize', 0.6, 5), ('Equalize', 0.5, 1)),
    (('Contrast', 0.6, 7), ('Sharpness', 0.6, 5)),
    (('Color', 0.7, 7), ('TranslateX', 0.5, 8)),
    (('Equalize', 0.3, 7), ('AutoContrast', 0.4, 8)),
    (('TranslateY', 0.4, 3), ('Sharpness', 0.2, 6)),
    (('Brightness', 0.9, 6), ('Color', 0.2, 8)),
    (('Solarize', 0.5, 2), ('Invert', 0.0, 3)),
    (('Equalize', 0.2, 0), ('AutoContrast', 0.6, 0)),
    (('Equalize', 0.2, 8), ('Equalize', 0.8, 4)),
    (('Color', 0.9, 9), ('Equalize', 0.6, 6)),
    (('AutoContrast', 0.8, 4), ('Solarize', 0.2, 8)),
    (('Brightness', 0.1, 3), ('Color', 0.7, 0)),
    (('Solarize', 0.4, 5), ('AutoContrast', 0.9, 3)),
    (('TranslateY', 0.9, 9), ('TranslateY', 0.7, 9)),
    (('AutoContrast', 0.9, 2), ('Solarize', 0.8, 3)),
    (('Equalize', 0.8, 8), ('Invert', 0.1, 3)),
    (('TranslateY', 0.7, 9), ('AutoContrast', 0.9, 1)),
]


def _mmpretrain_op(op, prob, level):
    """The paper's (op, level) as an MMPretrain transform: linear on the
    ranges of the PyTorch port used by ProCo/BCL, ``hi * level / 9``."""
    fraction = level / 9
    if op in ('ShearX', 'ShearY'):
        return dict(
            type='Shear', magnitude=0.3 * fraction, prob=prob,
            direction='horizontal' if op == 'ShearX' else 'vertical')
    if op in ('TranslateX', 'TranslateY'):
        return dict(
            type='Translate', magnitude=150 / 331 * fraction, prob=prob,
            direction='horizontal' if op == 'TranslateX' else 'vertical')
    if op == 'Rotate':
        return dict(type='Rotate', angle=30 * fraction, prob=prob)
    if op in ('Color', 'Contrast', 'Brightness', 'Sharpness'):
        name = 'ColorTransform' if op == 'Color' else op
        return dict(type=name, magnitude=0.9 * fraction, prob=prob)
    if op == 'Solarize':
        return dict(type='Solarize', thr=256 - 256 * fraction, prob=prob)
    if op == 'Posterize':
        return dict(type='Posterize', bits=round(8 - 4 * fraction), prob=prob)
    return dict(type=op, prob=prob)  # AutoContrast, Equalize, Invert


def test_cifar_autoaugment_policy_matches_the_paper():
    cfg = Config.fromfile(
        osp.join(CONFIG_DIR, '_base_', 'datasets', 'cifar_autoaugment.py'))
    # Only the policy list leaks into the configs that inherit it.
    assert list(cfg.keys()) == ['cifar_autoaugment_policies']
    policies = cfg.cifar_autoaugment_policies
    assert len(policies) == 25
    for sub_policy, paper in zip(policies, PAPER_CIFAR10_POLICY):
        assert len(sub_policy) == 2
        for op, (name, prob, level) in zip(sub_policy, paper):
            expected = _mmpretrain_op(name, prob, level)
            assert set(op) == set(expected), (op, expected)
            for key, value in expected.items():
                if isinstance(value, float):
                    assert math.isclose(op[key], value, abs_tol=1e-12), (
                        op, expected)
                else:
                    assert op[key] == value, (op, expected)


def test_every_cifar_autoaugment_operation_runs():
    """Each operation, forced to apply, on a 32x32 RGB image."""
    cfg = Config.fromfile(
        osp.join(CONFIG_DIR, '_base_', 'datasets', 'cifar_autoaugment.py'))
    rng = np.random.RandomState(0)
    img = rng.randint(0, 256, (32, 32, 3)).astype(np.uint8)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        for sub_policy in cfg.cifar_autoaugment_policies:
            for op in sub_policy:
                transform = TRANSFORMS.build(dict(op, prob=1.0))
                out = transform(dict(img=img.copy()))['img']
                assert out.shape == img.shape and out.dtype == np.uint8
        # Posterize level 7 keeps the 5 high bits.
        posterize = TRANSFORMS.build(dict(type='Posterize', bits=5, prob=1.))
        out = posterize(dict(img=img.copy()))['img']
        np.testing.assert_array_equal(out, img & 0b11111000)


def test_timm_randaugment_magnitudes():
    """At level 10 timm's default ops keep 4 bits (Posterize), solarize
    everything (threshold 0) and multiply brightness by 1.9, never by 0.1
    (no random sign, unlike MMPretrain's 'timm_increasing' preset)."""
    cfg = Config.fromfile(
        osp.join(CONFIG_DIR, '_base_', 'datasets', 'timm_randaugment.py'))
    policies = {(p['type'], p.get('direction')): p
                for p in cfg.timm_randaugment_policies}
    assert len(cfg.timm_randaugment_policies) == 15 == len(policies)
    rng = np.random.RandomState(0)
    img = rng.randint(0, 120, (16, 16, 3)).astype(np.uint8)
    level = dict(magnitude_level=10, total_level=10, prob=1.0)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        for policy in cfg.timm_randaugment_policies:
            transform = TRANSFORMS.build(dict(policy, **level))
            for _ in range(4):  # both signs of the signed operations
                out = transform(dict(img=img.copy()))['img']
                assert out.shape == img.shape and out.dtype == np.uint8
        posterize = TRANSFORMS.build(
            dict(policies[('Posterize', None)], **level))
        out = posterize(dict(img=img.copy()))['img']
        np.testing.assert_array_equal(out, img & 0b11110000)
        solarize = TRANSFORMS.build(dict(policies[('Solarize', None)],
                                         **level))
        out = solarize(dict(img=img.copy()))['img']
        np.testing.assert_array_equal(out, 255 - img)
        brightness = TRANSFORMS.build(
            dict(policies[('Brightness', None)], **level))
        for _ in range(5):
            out = brightness(dict(img=img.copy()))['img'].astype(float)
            np.testing.assert_allclose(
                out, np.clip(1.9 * img, 0, 255), atol=1.0)
        # The whole RandAugment of the ImageNet-LT classifier view builds.
        randaug = TRANSFORMS.build(
            dict(
                type='RandAugment',
                policies=cfg.timm_randaugment_policies,
                num_policies=2,
                magnitude_level=10,
                magnitude_std=0.5,
                total_level=10))
        for _ in range(10):
            out = randaug(dict(img=img.copy()))['img']
            assert out.shape == img.shape
