"""What every shipped config sets up around the model.

Exact resume: every shipped config that turns on mmlt.ExactResumeHook names the pieces
the hook needs: a training dataset that seeds its items (SeedsItems) and,
for epoch-based loops, a sampler that can skip the first indices of a
resumed epoch (SkipsFirstIndices). Nothing is swapped at run time, so a
config without them would resume inexactly."""
import glob
import os.path as osp

import pytest
from mmengine.config import Config

from mmlt.engine.protocols import SeedsItems, SkipsFirstIndices
from mmlt.registry import DATA_SAMPLERS, DATASETS

CONFIG_DIR = osp.join(osp.dirname(__file__), '..', '..', 'configs')
CONFIGS = sorted(
    osp.relpath(p, CONFIG_DIR)
    for p in glob.glob(osp.join(CONFIG_DIR, '**', '*.py'), recursive=True)
    if '_base_' not in p)


def _registered(registry, type_name):
    assert type_name.startswith('mmlt.'), type_name
    cls = registry.get(type_name)
    assert cls is not None, type_name
    return cls


@pytest.mark.parametrize('name', CONFIGS)
def test_exact_resume_pieces_are_declared(name):
    if name.startswith('lvis'):
        pytest.importorskip('mmdet')
    cfg = Config.fromfile(osp.join(CONFIG_DIR, name))
    hooks = [h['type'] for h in cfg.get('custom_hooks', [])]
    if 'mmlt.ExactResumeHook' not in hooks:
        pytest.skip('no ExactResumeHook')
    loader = cfg.train_dataloader
    if loader is None:
        pytest.skip('post hoc: nothing is trained')
    dataset = _registered(DATASETS, loader.dataset.type)
    assert issubclass(dataset, SeedsItems), loader.dataset.type
    if not cfg.train_cfg.get('by_epoch', True) or \
            'max_iters' in cfg.train_cfg:
        return  # iteration-based: no epoch to resume inside
    sampler = _registered(DATA_SAMPLERS, loader.sampler.type)
    assert issubclass(sampler, SkipsFirstIndices), loader.sampler.type


def test_every_config_is_checked():
    assert len(CONFIGS) >= 60


@pytest.mark.parametrize('name', CONFIGS)
def test_gpu_configs_pin_memory_and_autotune_fixed_sizes(name):
    """The GPU recipes pin their batches; those with one input size (all
    but LVIS's multi-scale training) turn cuDNN's autotuner on; the CPU
    (Fashion-MNIST) and toy configs do neither."""
    if name.startswith('lvis'):
        pytest.importorskip('mmdet')
    cfg = Config.fromfile(osp.join(CONFIG_DIR, name))
    gpu = 'fashion' not in name and '/toy/' not in name
    loader = cfg.get('train_dataloader')
    if loader is not None:
        assert bool(loader.get('pin_memory')) == gpu
    fixed_size = gpu and not name.startswith('lvis')
    assert bool(cfg.env_cfg.get('cudnn_benchmark')) == fixed_size
