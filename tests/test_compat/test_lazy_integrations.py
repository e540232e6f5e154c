"""Patches where needed only (issue 28).

A classification config resolves its ``mmlt.X`` types without the MMDetection
integration, so mmlt imports no ``mmdet`` module and leaves mmcv's ops alone;
an MMDetection config still resolves the integration's types without
``custom_imports``. Each compatibility fix of :mod:`mmlt.compat` switches
itself off outside the versions that need it.
"""
import json
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
import torch

import mmlt.compat as compat

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))

# MMPretrain itself imports mmdet for two optional classes
# (mmpretrain/models/utils/res_layer_extra_norm.py, losses/seesaw_loss.py).
# With ``block_host_imports`` those imports fail as if MMDetection were not
# installed (MMPretrain catches the ImportError), so every mmdet module left
# in sys.modules at the end was imported by mmlt.
CLASSIFICATION_CHILD = r'''
import importlib.abc, json, sys, traceback
block = sys.argv[1] == 'block'


class BlockMMPretrainsMMDet(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != 'mmdet' and not name.startswith('mmdet.'):
            return None
        for frame in reversed(traceback.extract_stack()[:-1]):
            if '<frozen' in frame.filename:
                continue
            if '/mmpretrain/' in frame.filename:
                raise ModuleNotFoundError(f'No module named {name!r}')
            return None
        return None


if block:
    sys.meta_path.insert(0, BlockMMPretrainsMMDet())


def mmdet_modules():
    return sorted(n for n in sys.modules
                  if n == 'mmdet' or n.startswith('mmdet.'))


from mmengine.config import Config
from mmengine.registry import init_default_scope
cfg = Config.fromfile('configs/proco_fashionmnistlt.py')
init_default_scope(cfg.default_scope)
import mmpretrain.models  # noqa: F401  (the host's own imports)
from mmpretrain.registry import (DATA_SAMPLERS, DATASETS, HOOKS, METRICS,
                                 MODEL_WRAPPERS, MODELS)
before = mmdet_modules()
model = MODELS.build(cfg.model)
preprocessor = MODELS.build(dict(cfg.model.data_preprocessor))
for hook in cfg.get('custom_hooks', []):
    assert HOOKS.get(hook['type']) is not None, hook
assert DATASETS.get(cfg.train_dataloader.dataset.type) is not None
assert DATA_SAMPLERS.get(cfg.train_dataloader.sampler.type) is not None
for metric in ([cfg.val_evaluator] if isinstance(cfg.val_evaluator, dict)
               else cfg.val_evaluator):
    assert METRICS.get(metric['type']) is not None, metric
assert MODEL_WRAPPERS.get(cfg.model_wrapper_cfg.type) is not None
import mmlt
from mmcv.ops.nms import NMSop
from mmcv.ops.roi_align import RoIAlignFunction
print(json.dumps(dict(
    before=before, after=mmdet_modules(),
    integration='mmlt.integrations.mmdet' in sys.modules,
    patched=[getattr(f, '_mmlt_float32_on_cpu', False)
             for f in (NMSop, RoIAlignFunction)])))
'''

DETECTION_CHILD = r'''
import sys
from mmengine.config import Config
from mmengine.registry import init_default_scope
cfg = Config.fromfile(
    'configs/lvis/toy/mask-rcnn_r18-tiny_fpn_proco_toy-lvis.py')
assert 'custom_imports' not in cfg
init_default_scope(cfg.default_scope)
from mmdet.registry import MODELS
model = MODELS.build(cfg.model)
from mmlt.integrations.mmdet import ContrastiveRoIHead
assert isinstance(model.roi_head, ContrastiveRoIHead), type(model.roi_head)
from mmcv.ops.nms import NMSop
assert NMSop._mmlt_float32_on_cpu
print('OK')
'''


def run_child(code, *args):
    out = subprocess.run([sys.executable, '-c', code, *args],
                         cwd=REPO,
                         capture_output=True,
                         text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize(
    'mode', ['block', pytest.param('plain', marks=pytest.mark.slow)])
def test_classification_build_imports_no_mmdet(mode):
    pytest.importorskip('mmpretrain')
    result = json.loads(run_child(CLASSIFICATION_CHILD, mode))
    assert not result['integration']
    assert result['patched'] == [False, False]  # mmcv's ops left alone
    if mode == 'block':
        # MMPretrain's optional mmdet imports failed: nothing imported mmdet
        assert result['after'] == []
    else:
        # MMPretrain imported mmdet itself; mmlt added no mmdet module
        assert result['after'] == result['before']


def test_detection_config_resolves_without_custom_imports():
    pytest.importorskip('mmdet')
    assert run_child(DETECTION_CHILD) == 'OK'


@pytest.mark.slow
def test_mmdet_lookup_without_default_scope_imports_integration():
    pytest.importorskip('mmdet')
    code = ('import sys\n'
            'from mmdet.registry import MODELS\n'
            "cls = MODELS.get('mmlt.ContrastiveRoIHead')\n"
            "assert cls is not None and cls.__module__.startswith("
            "'mmlt.integrations.mmdet'), cls\n"
            "print('OK')\n")
    assert run_child(code) == 'OK'


# ---------------------------------------------------------------------------
# version guards
# ---------------------------------------------------------------------------


@pytest.mark.parametrize('mmengine_version, torch_version, needed', [
    ((0, 10, 7), (2, 6, 0), True),
    ((0, 11, 0), (2, 6, 0), False),
    ((0, 10, 7), (2, 5, 1), False),
])
def test_weights_only_guard(monkeypatch, mmengine_version, torch_version,
                            needed):
    monkeypatch.setattr(compat, '_mmengine_version', lambda: mmengine_version)
    monkeypatch.setattr(compat, '_torch_version', lambda: torch_version)
    added = []
    monkeypatch.setattr(torch.serialization, 'add_safe_globals', added.append)
    assert compat.weights_only_fix_needed() is needed
    assert compat._allow_mmengine_checkpoints() is needed
    assert bool(added) is needed


def test_cpu_distributed_guard(monkeypatch):
    from mmengine.model.wrappers import MMDistributedDataParallel
    monkeypatch.setattr(compat, '_mmengine_version', lambda: (0, 11, 0))
    init = MMDistributedDataParallel.__init__
    assert not compat.cpu_distributed_fix_needed()
    assert compat._allow_cpu_distributed() is False
    assert MMDistributedDataParallel.__init__ is init
    monkeypatch.setattr(compat, '_mmengine_version', lambda: (0, 10, 7))
    assert compat.cpu_distributed_fix_needed()


@pytest.mark.parametrize('lvis_version, numpy_has_float, needed', [
    ('0.5.3', False, True),
    ('0.5.4', False, False),
    (None, False, False),
    ('0.5.3', True, False),
])
def test_lvis_guard(monkeypatch, lvis_version, numpy_has_float, needed):
    from mmengine.utils import digit_version
    monkeypatch.setattr(
        compat, '_lvis_version', lambda: None
        if lvis_version is None else digit_version(lvis_version))
    if numpy_has_float:
        monkeypatch.setattr(np, 'float', float, raising=False)
    elif hasattr(np, 'float'):
        monkeypatch.delattr(np, 'float')
    finders = list(sys.meta_path)
    monkeypatch.setattr(sys, 'meta_path', [
        f for f in finders if not isinstance(f, compat._LvisNumpyFinder)
    ])
    assert compat.lvis_fix_needed() is needed
    assert compat._fix_lvis_numpy_aliases() is needed
    assert any(
        isinstance(f, compat._LvisNumpyFinder)
        for f in sys.meta_path) is needed


def test_cpu_autocast_guard(monkeypatch):
    pytest.importorskip('mmdet')
    from mmengine.utils import digit_version

    from mmlt.integrations.mmdet import cpu_autocast
    monkeypatch.setattr(cpu_autocast, '_mmcv_version',
                        lambda: digit_version('2.3.0'))
    assert not cpu_autocast.needed()
    assert cpu_autocast.apply() is False
    monkeypatch.setattr(cpu_autocast, '_mmcv_version',
                        lambda: digit_version('2.1.0'))
    assert cpu_autocast.needed()


def test_fixes_are_listed_in_compat_and_readme():
    readme = open(osp.join(REPO, 'README.md')).read()
    section = readme.split('## Compatibility fixes', 1)[1].split('\n## ')[0]
    for words in ('weights_only', 'CPU-only', 'lvis', 'cpu_autocast',
                  'mmlt/utils/checkpoint.py', 'mmcv < 2.3', 'mmengine < 0.11'):
        assert words in section, words
    doc = compat.__doc__
    for words in ('mmengine checkpoints', 'mmlt.utils.checkpoint',
                  'without a GPU', 'lvis-api', 'cpu_autocast', 'mmcv < 2.3',
                  'mmengine < 0.11', 'torch >= 2.6', 'lvis <= 0.5.3'):
        assert words in doc, words
