"""mmlt.GatherBoundHook hands the training loader's batch size to the
outermost modules that gather across ranks, and every shipped config has
it (tests/test_models/test_ddp_host_reads.py: what the bound buys)."""
import glob
import os.path as osp
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn
from mmengine.config import Config

from mmlt.engine.hooks import GatherBoundHook
from mmlt.engine.hooks.gather_bound_hook import outermost_modules
from mmlt.engine.protocols import GathersAcrossRanks
from mmlt.models.losses import BCLLoss, ProCoLoss, SupConLoss

CONFIG_DIR = osp.join(osp.dirname(__file__), '..', '..', 'configs')


class Head(nn.Module, GathersAcrossRanks):
    """Bounds its loss itself: 3 rows per sample."""

    def __init__(self):
        super().__init__()
        self.loss = SupConLoss()

    def set_max_batch_size(self, max_batch_size):
        self.loss.set_max_batch_size(3 * max_batch_size)


def test_outermost_modules_are_bounded_once(monkeypatch):
    model = nn.ModuleDict(dict(
        head=Head(), proco=ProCoLoss(4, 8, class_counts=[4, 3, 2, 1]),
        bcl=nn.Sequential(BCLLoss())))
    found = outermost_modules(model, GathersAcrossRanks)
    assert [type(m).__name__ for m in found] == ['Head', 'ProCoLoss',
                                                 'BCLLoss']
    loader = SimpleNamespace(batch_sampler=SimpleNamespace(batch_size=16))
    runner = SimpleNamespace(train_dataloader=loader, model=model,
                             logger=None)
    GatherBoundHook().before_train(runner)
    assert model['head'].loss.max_batch_size == 48
    assert model['head'].loss.gather_bound(2) == 96  # 2 views
    assert model['proco'].gather_bound() == 16
    assert model['bcl'][0].max_batch_size == 16
    with pytest.raises(ValueError, match='max_batch_size'):
        model['proco'].set_max_batch_size(0)


def test_without_a_bound_the_losses_say_so():
    assert SupConLoss().gather_bound(2) is None


@pytest.mark.parametrize('name', sorted(
    osp.relpath(p, CONFIG_DIR)
    for p in glob.glob(osp.join(CONFIG_DIR, '**', '*.py'), recursive=True)
    if '_base_' not in p))
def test_every_config_bounds_its_gathers(name):
    if name.startswith('lvis'):
        pytest.importorskip('mmdet')
    cfg = Config.fromfile(osp.join(CONFIG_DIR, name))
    types = [hook.get('type') for hook in cfg.default_hooks.values()
             if isinstance(hook, dict)]
    assert 'mmlt.GatherBoundHook' in types
