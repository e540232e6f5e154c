"""Work-arounds for known breakages of the OpenMMLab stack that mmlt runs on.

:func:`apply` runs once on ``import mmlt``. Each fix is guarded by a version or
feature check, so it switches itself off once the upstream project is fixed,
and names the upstream issue it works around.

1. Checkpoints on torch >= 2.6 (mmengine issue #1655). ``torch.load`` defaults
   to ``weights_only=True`` there, and mmengine 0.10.x checkpoints hold a few
   non-tensor objects (the message hub's ``HistoryBuffer`` with numpy arrays,
   numpy scalars, and ``getattr(HistoryBuffer, 'min')``-style references to
   its statistics methods), so ``resume`` and ``load_from`` fail. We do *not*
   switch ``weights_only`` off: we allow-list exactly those objects, and map the
   pickle's ``builtins.getattr`` to a getattr that only returns the statistics
   methods of ``HistoryBuffer``. A checkpoint with any other pickled object is
   still refused by torch's safe unpickler.
2. Distributed training on a machine without a GPU (mmengine 0.10.x):
   ``init_dist`` calls ``torch.cuda.set_device`` before ``init_process_group``
   (fails with "Found no NVIDIA driver" even with ``backend='gloo'``), the
   default backend is ``nccl``, and the runner wraps a CPU model in DDP with
   ``device_ids=[local_rank]``, which torch rejects. Without CUDA we skip the
   ``set_device`` step, fall back from ``nccl`` to ``gloo`` and drop
   ``device_ids``.
3. lvis-api 0.5.3 (lvis-dataset/lvis-api, ``np.float`` in ``lvis/eval.py``)
   uses numpy aliases that numpy 1.24 removed, and fails at the end of every
   LVIS evaluation. We give the ``lvis`` modules (and only them) a numpy view
   that still has the aliases. Applied when ``lvis`` is imported, through an
   import hook, so ``import mmlt`` does not import lvis.
"""
import contextlib
import functools
import importlib.abc
import importlib.util
import pickle
import sys
import types
import warnings

import numpy as np
import torch

_APPLIED = False

# ---------------------------------------------------------------------------
# 1. torch.load(weights_only=True) and mmengine checkpoints
# ---------------------------------------------------------------------------


def _torch_version():
    from mmengine.utils import digit_version
    return digit_version(torch.__version__.split('+')[0])


def _history_buffer_getattr(obj, name):
    """The only ``getattr`` that an mmengine checkpoint needs.

    ``HistoryBuffer._statistics_methods`` maps names to the class's own
    functions, which pickle as ``getattr(HistoryBuffer, 'min')``. Anything
    else is refused, so a crafted checkpoint cannot use ``getattr`` to reach
    other objects.
    """
    from mmengine.logging import HistoryBuffer
    allowed = {'min', 'max', 'current', 'mean'}
    allowed.update(getattr(HistoryBuffer, '_statistics_methods', {}))
    if obj is HistoryBuffer and name in allowed:
        return getattr(obj, name)
    raise pickle.UnpicklingError(
        f'mmlt refused getattr({obj!r}, {name!r}) while loading a checkpoint: '
        'only the statistics methods of mmengine.logging.HistoryBuffer are '
        'allowed. If you trust this file, load it with '
        'torch.load(path, weights_only=False).')


def checkpoint_safe_globals():
    """The objects that mmengine checkpoints contain besides tensors.

    Returns:
        list: entries for :func:`torch.serialization.add_safe_globals`
        (objects, or ``(object, 'module.name')`` pairs where the pickled name
        differs from the object's own).
    """
    from mmengine.logging import HistoryBuffer
    try:
        from numpy._core.multiarray import _reconstruct, scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct, scalar
    safe = [
        HistoryBuffer,
        np.ndarray,
        np.dtype,
        (_history_buffer_getattr, 'builtins.getattr'),
    ]
    # numpy 2 pickles its C module as numpy._core, numpy 1 as numpy.core.
    for module in ('numpy.core.multiarray', 'numpy._core.multiarray'):
        safe.append((_reconstruct, f'{module}._reconstruct'))
        safe.append((scalar, f'{module}.scalar'))
    # numpy >= 1.25 may pickle dtypes by their class (np.dtypes.Float64DType).
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is not None:
        for name in dir(dtypes):
            obj = getattr(dtypes, name)
            if isinstance(obj, type) and issubclass(obj, np.dtype):
                safe.append(obj)
    return safe


def _allow_mmengine_checkpoints():
    serialization = torch.serialization
    if not hasattr(serialization, 'add_safe_globals'):
        return False  # torch < 2.4: torch.load is not weights_only by default
    if _torch_version() < (2, 6):
        return False
    serialization.add_safe_globals(checkpoint_safe_globals())
    return True


# ---------------------------------------------------------------------------
# 2. distributed training on CPU-only machines
# ---------------------------------------------------------------------------


def _cuda_usable():
    return torch.cuda.is_available()


@contextlib.contextmanager
def _no_cuda_set_device():
    original = torch.cuda.set_device
    torch.cuda.set_device = lambda *args, **kwargs: None
    try:
        yield
    finally:
        torch.cuda.set_device = original


def _cpu_safe_init(init_fn):

    @functools.wraps(init_fn)
    def wrapper(backend, *args, **kwargs):
        if _cuda_usable():
            return init_fn(backend, *args, **kwargs)
        if backend == 'nccl':
            warnings.warn(
                'mmlt: CUDA is not available, so the distributed backend '
                "'nccl' was replaced by 'gloo'. Set "
                "env_cfg=dict(dist_cfg=dict(backend='gloo')) to silence this.")
            backend = 'gloo'
        with _no_cuda_set_device():
            return init_fn(backend, *args, **kwargs)

    wrapper._mmlt_cpu_safe = True
    return wrapper


def _cpu_safe_ddp_init(ddp_init):

    @functools.wraps(ddp_init)
    def wrapper(self, module, *args, **kwargs):
        if not _cuda_usable() and all(
                p.device.type == 'cpu' for p in module.parameters()):
            # torch refuses device_ids for CPU modules.
            kwargs.pop('device_ids', None)
            kwargs.pop('output_device', None)
        return ddp_init(self, module, *args, **kwargs)

    wrapper._mmlt_cpu_safe = True
    return wrapper


def _allow_cpu_distributed():
    from mmengine.dist import utils as dist_utils
    from mmengine.model.wrappers import MMDistributedDataParallel
    for name in ('_init_dist_pytorch', '_init_dist_slurm', '_init_dist_mpi'):
        fn = getattr(dist_utils, name, None)
        if fn is not None and not getattr(fn, '_mmlt_cpu_safe', False):
            setattr(dist_utils, name, _cpu_safe_init(fn))
    init = MMDistributedDataParallel.__init__
    if not getattr(init, '_mmlt_cpu_safe', False):
        MMDistributedDataParallel.__init__ = _cpu_safe_ddp_init(init)


# ---------------------------------------------------------------------------
# 3. lvis-api and numpy >= 1.24
# ---------------------------------------------------------------------------

_NUMPY_ALIASES = {'float': float, 'int': int, 'bool': bool, 'object': object}


class _NumpyWithAliases(types.ModuleType):
    """numpy, plus the aliases ``np.float``/``np.int``/... removed in 1.24."""

    def __init__(self):
        super().__init__('numpy')

    def __getattr__(self, name):
        if name in _NUMPY_ALIASES and not hasattr(np, name):
            return _NUMPY_ALIASES[name]
        return getattr(np, name)


def patch_lvis_module(module):
    """Give one imported ``lvis`` module a numpy view with the old aliases."""
    if getattr(module, 'np', None) is np:
        module.np = _NumpyWithAliases()


class _LvisNumpyFinder(importlib.abc.MetaPathFinder):
    """Patches ``lvis.*`` modules right after they are imported."""

    def find_spec(self, fullname, path, target=None):
        if fullname != 'lvis' and not fullname.startswith('lvis.'):
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, 'find_spec'):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        if loader is None or not hasattr(loader, 'exec_module'):
            return spec
        original_exec = loader.exec_module

        def exec_module(module):
            original_exec(module)
            patch_lvis_module(module)

        spec.loader = _PatchedLoader(loader, exec_module)
        return spec


class _PatchedLoader(importlib.abc.Loader):

    def __init__(self, loader, exec_module):
        self._loader = loader
        self._exec_module = exec_module

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._exec_module(module)

    def __getattr__(self, name):
        return getattr(self._loader, name)


def _fix_lvis_numpy_aliases():
    if hasattr(np, 'float'):
        return False  # numpy < 1.24 still has the aliases
    for name, module in list(sys.modules.items()):
        if name == 'lvis' or name.startswith('lvis.'):
            patch_lvis_module(module)
    if not any(isinstance(f, _LvisNumpyFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _LvisNumpyFinder())
    return True


def apply():
    """Apply every fix once; safe to call again."""
    global _APPLIED
    if _APPLIED:
        return
    _allow_mmengine_checkpoints()
    _allow_cpu_distributed()
    _fix_lvis_numpy_aliases()
    _APPLIED = True
