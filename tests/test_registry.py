"""Every mmlt component resolves as 'mmlt.X' under each host's default scope,
without custom_imports (MMEngine imports mmlt.registry on demand)."""
import json
import subprocess
import sys

import pytest

import mmlt.registry as mmlt_registry

REGISTRIES = ('MODELS', 'DATASETS', 'DATA_SAMPLERS', 'TRANSFORMS', 'HOOKS',
              'METRICS', 'PARAM_SCHEDULERS')

CHILD = r'''
import json, sys, importlib
names = json.loads(sys.argv[2])
scope = sys.argv[1]
assert 'mmlt' not in sys.modules
from mmengine.registry import DefaultScope
host = importlib.import_module(f'{scope}.registry')
DefaultScope.get_instance('registry-test', scope_name=scope)
missing = []
for registry_name, keys in names.items():
    registry = getattr(host, registry_name)
    for key in keys:
        obj = registry.get('mmlt.' + key)
        if obj is None or obj.__module__.split('.')[0] != 'mmlt':
            missing.append(f'{registry_name}:{key}')
print(json.dumps(missing))
'''


def registered_names():
    names = {}
    for registry_name in REGISTRIES:
        registry = getattr(mmlt_registry, registry_name)
        registry.import_all_locations()
        names[registry_name] = sorted(registry.module_dict)
    return names


def test_core_components_are_registered():
    names = registered_names()
    for key in ('ProCoLoss', 'BCLLoss', 'SupConLoss', 'LogitAdjustLoss',
                'BalancedSoftmaxLoss', 'VMFEstimator', 'ContrastiveClsHead',
                'DecoupledClsHead', 'CifarResNet'):
        assert key in names['MODELS'], key
    for key in ('ClassCountsHook', 'VMFWindowHook'):
        assert key in names['HOOKS'], key
    assert 'LongTailAccuracy' in names['METRICS']
    assert 'FashionMNISTLT' in names['DATASETS']
    assert 'ClassAwareSampler' in names['DATA_SAMPLERS']
    assert 'RandAugmentMC' in names['TRANSFORMS']
    assert 'FixMatchCosineLR' in names['PARAM_SCHEDULERS']


@pytest.mark.slow
@pytest.mark.parametrize('scope', ['mmengine', 'mmpretrain', 'mmdet'])
def test_mmlt_prefix_resolves_under_default_scope(scope):
    pytest.importorskip(scope)
    names = registered_names()
    # mmdet-only parts need not resolve where mmdet is not the host, and
    # vice versa: they are all registered when their host is installed.
    out = subprocess.run(
        [sys.executable, '-c', CHILD, scope,
         json.dumps(names)],
        capture_output=True,
        text=True,
        timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    missing = json.loads(out.stdout.strip().splitlines()[-1])
    assert missing == []


def test_every_class_lives_under_its_registry_locations():
    # A lookup imports only the registry's own locations, so a class defined
    # elsewhere resolves only if another registry happened to import its
    # module first (a config's first mmlt lookup may be its dataset).
    names = registered_names()
    for registry_name in REGISTRIES:
        registry = getattr(mmlt_registry, registry_name)
        for key in names[registry_name]:
            module = registry.module_dict[key].__module__
            assert any(
                module == loc or module.startswith(loc + '.')
                for loc in registry.all_locations), (registry_name, key,
                                                     module)


def test_unknown_mmlt_name_is_none():
    from mmengine.registry import MODELS
    assert MODELS.get('mmlt.NoSuchLoss') is None
