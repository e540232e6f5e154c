"""The core imports with torch + mmengine only: MMPretrain, MMDetection and
mmcv are imported lazily, by the integrations, when they are installed."""
import os
import subprocess
import sys

import pytest

CHILD = r'''
import sys
# make the hosts unimportable, as on a machine without them
for name in ('mmpretrain', 'mmdet', 'mmcv', 'lvis', 'faiss'):
    sys.modules[name] = None
import mmlt
import mmlt.models, mmlt.datasets, mmlt.engine, mmlt.evaluation
from mmlt.registry import MODELS, HOOKS, DATASETS, DATA_SAMPLERS, METRICS
for registry in (MODELS, HOOKS, DATASETS, DATA_SAMPLERS, METRICS):
    registry.import_from_location()
import torch
from mmlt.models.losses import ProCoLoss
loss = ProCoLoss(num_classes=3, feat_dim=4, class_counts=[3, 2, 1])
z = torch.nn.functional.normalize(torch.randn(5, 4), dim=1)
value = loss(z, torch.tensor([0, 1, 2, 0, 1]))
assert torch.isfinite(value)
for key in ('ProCoLoss', 'BCLLoss', 'SupConLoss', 'ContrastiveBranch',
            'VMFEstimator', 'ProtoNCELoss'):
    assert MODELS.get(key) is not None, key
# the MMPretrain head and preprocessor live with their host
assert 'MultiViewDataPreprocessor' not in MODELS.module_dict
assert 'ContrastiveClsHead' not in MODELS.module_dict
loaded = [m for m in ('mmpretrain', 'mmdet', 'mmcv') if sys.modules.get(m)]
print('loaded hosts:', loaded)
assert not loaded
'''


@pytest.mark.slow
def test_core_imports_without_hosts():
    out = subprocess.run([sys.executable, '-c', CHILD],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert 'loaded hosts: []' in out.stdout


BROKEN_HOST_CHILD = r'''
import warnings
from mmengine.registry import DefaultScope
import mmpretrain.registry as host
DefaultScope.get_instance('broken-mmdet', scope_name='mmpretrain')
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter('always')
    assert host.DATASETS.get('mmlt.FashionMNISTLT') is not None
    assert host.MODELS.get('mmlt.ProCoLoss') is not None
    assert host.MODELS.get('mmlt.MultiViewDataPreprocessor') is not None
    assert host.MODELS.get('mmlt.ContrastiveRoIHead') is None
print('WARNINGS:', [str(w.message) for w in caught])
'''


@pytest.mark.slow
def test_broken_mmdet_does_not_break_classification(tmp_path):
    # An installed MMDetection whose models cannot import (here: next to
    # mmcv-lite, without the compiled ops): classification configs still
    # resolve their mmlt types, and the user is told why the detection
    # parts are missing.
    fake = tmp_path / 'mmdet'
    (fake / 'models').mkdir(parents=True)
    (fake / '__init__.py').write_text("__version__ = '3.3.0'\n")
    (fake / 'models' / '__init__.py').write_text(
        "raise ModuleNotFoundError(\"No module named 'mmcv._ext'\")\n")
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    out = subprocess.run([sys.executable, '-c', BROKEN_HOST_CHILD],
                         capture_output=True,
                         text=True,
                         timeout=300,
                         env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert 'mmdet is installed but `import mmdet.models` failed' in out.stdout
    assert "No module named 'mmcv._ext'" in out.stdout
