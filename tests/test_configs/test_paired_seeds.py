"""Paired seeds: a config and the same config plus an optional branch
(projector, prototype MLP, contrastive loss), built with ``MODELS.build`` and
``init_weights()`` after one ``torch.manual_seed``, start from bitwise equal
weights in every module they share (issue 27, part 1)."""
import os.path as osp

import pytest
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.registry import MODELS, init_default_scope

from mmlt.utils.seeding import branch_random_stream

CONFIG_DIR = osp.join(osp.dirname(__file__), '..', '..', 'configs')
S, T, L = 'semi_supervised/', 'lvis/toy/mask-rcnn_r18-tiny_fpn_', \
    'lvis/mask-rcnn_r50_fpn_'
# (without the branch, with it): configs that differ only by the branch
CLS_PAIRS = [
    ('la_fashionmnistlt.py', 'proco_fashionmnistlt.py'),
    ('la_fashionmnistlt.py', 'bcl_fashionmnistlt.py'),
    ('la_r32_cifar100lt.py', 'proco_r32_cifar100lt.py'),
    ('la_r32_cifar100lt.py', 'bcl_r32_cifar100lt.py'),
    ('la_r50_imagenetlt.py', 'proco_r50_imagenetlt.py'),
    ('la_r50_imagenetlt.py', 'bcl_r50_imagenetlt.py'),
    (S + 'fixmatch-la_fashionmnistlt-consistent.py',
     S + 'fixmatch-la-proco_fashionmnistlt-consistent.py'),
    (S + 'fixmatch-la_wrn28-2_cifar10lt-consistent.py',
     S + 'fixmatch-la-proco_wrn28-2_cifar10lt-consistent.py'),
]
DET_PAIRS = [
    (T + 'la_toy-lvis.py', T + 'proco_toy-lvis.py'),
    (T + 'seesaw_toy-lvis.py', T + 'seesaw-proco_toy-lvis.py'),
    (L + 'la_sample1e-3_ms-1x_lvis-v1.py',
     L + 'proco_sample1e-3_ms-1x_lvis-v1.py'),
    (L + 'la_sample1e-3_ms-1x_lvis-v1.py', L + 'bcl_sample1e-3_ms-1x_lvis-v1.py'),
    (L + 'sample1e-3_ms-1x_lvis-v1.py', L + 'supcon_sample1e-3_ms-1x_lvis-v1.py'),
    (L + 'seesaw_sample1e-3_ms-1x_lvis-v1.py',
     L + 'seesaw-proco_sample1e-3_ms-1x_lvis-v1.py'),
    (L + 'seesaw_sample1e-3_ms-2x_lvis-v1.py',
     L + 'seesaw-proco_sample1e-3_ms-2x_lvis-v1.py'),
]


def initial_weights(name: str, seed: int = 0) -> dict:
    cfg = Config.fromfile(osp.join(CONFIG_DIR, name))
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    backbone = cfg.model.get('backbone', {})
    if isinstance(backbone.get('init_cfg'), dict) and \
            backbone.init_cfg.get('type') == 'Pretrained':
        backbone.init_cfg = None  # no download; the same for both configs
    torch.manual_seed(seed)
    model = MODELS.build(cfg.model)
    model.init_weights()
    return model.state_dict()


def assert_paired(base: str, with_branch: str) -> None:
    plain, branched = initial_weights(base), initial_weights(with_branch)
    extra = [key for key in branched if key not in plain]
    assert extra and all('contrast_branch.' in key for key in extra), extra
    assert all(key in branched for key in plain)
    differ = [
        key for key, value in plain.items()
        if not torch.equal(value.nan_to_num(7.0), branched[key].nan_to_num(
            7.0))  # the unset prior is NaN in both
    ]
    assert differ == [], f'{len(differ)} of {len(plain)} differ: {differ[:5]}'


@pytest.mark.parametrize('pair', CLS_PAIRS, ids=lambda p: p[1])
def test_classification_pairs_start_equal(pair):
    pytest.importorskip('mmpretrain')
    assert_paired(*pair)


@pytest.mark.parametrize('pair', DET_PAIRS, ids=lambda p: p[1])
def test_detection_pairs_start_equal(pair):
    pytest.importorskip('mmdet')
    assert_paired(*pair)


def test_branch_stream_leaves_the_global_generator_alone():
    torch.manual_seed(3)
    expected = torch.rand(5)
    torch.manual_seed(3)
    with branch_random_stream():
        inside = torch.rand(5)
        layer = nn.Linear(4, 3)
    after = torch.rand(5)
    assert torch.equal(after, expected)
    # its own stream: not the global continuation, and set by the seed
    assert not torch.equal(inside, expected)
    torch.manual_seed(3)
    with branch_random_stream():
        assert torch.equal(torch.rand(5), inside)
        assert torch.equal(nn.Linear(4, 3).weight, layer.weight)
    torch.manual_seed(4)
    with branch_random_stream():
        assert not torch.equal(torch.rand(5), inside)


def test_branch_weights_follow_the_seed():
    """The branch is initialised, not constant: another seed, other
    weights; the same seed, the same weights."""
    first = initial_weights('proco_fashionmnistlt.py', seed=0)
    again = initial_weights('proco_fashionmnistlt.py', seed=0)
    other = initial_weights('proco_fashionmnistlt.py', seed=1)
    key = 'head.contrast_branch.projector.0.weight'
    assert torch.equal(first[key], again[key])
    assert not torch.equal(first[key], other[key])
