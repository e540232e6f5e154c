"""mmlt's registries: children of MMEngine's root registries with ``scope='mmlt'``.

Because every registry here is a child of the MMEngine root, a config whose
``default_scope`` is ``mmengine``, ``mmpretrain`` or ``mmdet`` can name an mmlt
component as ``type='mmlt.ProCoLoss'`` without ``custom_imports``: MMEngine imports
``mmlt.registry`` on the first lookup of the ``mmlt`` scope, and each registry then
imports its ``locations`` to register the classes.

The MMDetection integration is a *host location*: it is imported (and with it
:mod:`mmlt.integrations.mmdet.cpu_autocast`'s mmcv patch) only when a lookup
happens under the ``mmdet`` default scope, or when a lookup misses the other
locations and MMDetection is installed (an MMDetection registry resolving
``mmlt.ContrastiveRoIHead`` without a default scope). Whether ``mmdet`` is
imported is no sign: MMPretrain imports it for two optional classes. A
classification build does not import the integration, and mmlt imports no
``mmdet`` module for it (tests/test_compat/test_lazy_integrations.py).
"""
import importlib
import importlib.util
import sys
from typing import Dict, List, Optional, Type

from mmengine.registry import DATA_SAMPLERS as MMENGINE_DATA_SAMPLERS
from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import METRICS as MMENGINE_METRICS
from mmengine.registry import MODEL_WRAPPERS as MMENGINE_MODEL_WRAPPERS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import OPTIM_WRAPPERS as MMENGINE_OPTIM_WRAPPERS
from mmengine.registry import PARAM_SCHEDULERS as MMENGINE_PARAM_SCHEDULERS
from mmengine.registry import TRANSFORMS as MMENGINE_TRANSFORMS
from mmengine.registry import DefaultScope
from mmengine.registry import Registry as _MMEngineRegistry

#: Integrations imported only when their host is in use, per registry.
_MMDET = {'mmdet': ['mmlt.integrations.mmdet']}


def host_in_use(host: str) -> bool:
    """Whether ``host`` (e.g. ``'mmdet'``) is the current default scope."""
    current = DefaultScope.get_current_instance()
    return current is not None and current.scope_name == host


def _host_installed(host: str) -> bool:
    if host in sys.modules:
        return sys.modules[host] is not None
    try:
        return importlib.util.find_spec(host) is not None
    except (ImportError, ValueError):
        return False


class Registry(_MMEngineRegistry):
    """An MMEngine registry with *host locations*.

    Args:
        host_locations (dict[str, list[str]], optional): For each host package
            (``'mmdet'``), the modules that register this registry's classes
            built on it. They are imported on a lookup only when the host is
            the default scope (:func:`host_in_use`), or on a lookup that
            misses the other locations while the host is installed.
        *args, **kwargs: As for :class:`mmengine.registry.Registry`.
    """

    def __init__(self,
                 *args,
                 host_locations: Optional[Dict[str, List[str]]] = None,
                 **kwargs):
        super().__init__(*args, **kwargs)
        self._host_locations = dict(host_locations or {})
        self._hosts_imported = set()

    @property
    def all_locations(self) -> List[str]:
        """``locations`` followed by every host location."""
        return list(self._locations) + [
            loc for locs in self._host_locations.values() for loc in locs
        ]

    def import_host_locations(self, host: str) -> None:
        """Import ``host``'s locations (once)."""
        if host in self._hosts_imported:
            return
        self._hosts_imported.add(host)
        for loc in self._host_locations[host]:
            importlib.import_module(loc)

    def import_from_location(self) -> None:
        super().import_from_location()
        for host in self._host_locations:
            if host not in self._hosts_imported and host_in_use(host):
                self.import_host_locations(host)

    def import_all_locations(self) -> None:
        """Import the locations and the host locations of installed hosts."""
        super().import_from_location()
        for host in self._host_locations:
            if _host_installed(host):
                self.import_host_locations(host)

    def get(self, key: str) -> Optional[Type]:
        obj = super().get(key)
        if obj is not None:
            return obj
        scope, _ = self.split_scope_key(key)
        if scope not in (None, self.scope):
            return obj
        pending = [
            host for host in self._host_locations
            if host not in self._hosts_imported and _host_installed(host)
        ]
        if not pending:
            return obj
        for host in pending:
            self.import_host_locations(host)
        return super().get(key)


_MODEL_LOCATIONS = ['mmlt.models', 'mmlt.integrations.mmpretrain']

#: Losses, heads, necks, classifiers, data preprocessors, the vMF estimator.
MODELS = Registry(
    'model',
    parent=MMENGINE_MODELS,
    scope='mmlt',
    locations=_MODEL_LOCATIONS,
    host_locations=_MMDET)
#: Model wrappers.
MODEL_WRAPPERS = Registry(
    'model_wrapper',
    parent=MMENGINE_MODEL_WRAPPERS,
    scope='mmlt',
    locations=['mmlt.engine'])
#: Long-tailed datasets (classification, and LVIS with class counts when
#: MMDetection is installed).
DATASETS = Registry(
    'dataset',
    parent=MMENGINE_DATASETS,
    scope='mmlt',
    locations=['mmlt.datasets'],
    host_locations=_MMDET)
#: Class-aware and other balanced samplers.
DATA_SAMPLERS = Registry(
    'data sampler',
    parent=MMENGINE_DATA_SAMPLERS,
    scope='mmlt',
    locations=['mmlt.datasets'],
    host_locations=_MMDET)
#: Data transforms (multi-view wrappers and friends).
TRANSFORMS = Registry(
    'transform',
    parent=MMENGINE_TRANSFORMS,
    scope='mmlt',
    locations=['mmlt.datasets'])
#: Hooks (vMF window, prototype clustering).
HOOKS = Registry(
    'hook', parent=MMENGINE_HOOKS, scope='mmlt', locations=['mmlt.engine'])
#: Optimizer wrappers.
OPTIM_WRAPPERS = Registry(
    'optim_wrapper',
    parent=MMENGINE_OPTIM_WRAPPERS,
    scope='mmlt',
    locations=['mmlt.engine'])
#: Parameter schedulers (FixMatch's cosine learning rate).
PARAM_SCHEDULERS = Registry(
    'parameter scheduler',
    parent=MMENGINE_PARAM_SCHEDULERS,
    scope='mmlt',
    locations=['mmlt.engine'])
#: Metrics (many/medium/few accuracy; LVIS AP-fixed and AP-pool when
#: MMDetection is installed).
METRICS = Registry(
    'metric',
    parent=MMENGINE_METRICS,
    scope='mmlt',
    locations=['mmlt.evaluation'],
    host_locations=_MMDET)
