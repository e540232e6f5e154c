"""Work-arounds for known breakages of the OpenMMLab stack that mmlt runs on.

Every change that mmlt makes to another library is listed here (and in the
README's "Compatibility fixes"). Fixes 1, 3, 4 and 5 are guarded by versions:
the versions known to need them, up to the last release checked, so a newer
release is left alone until someone checks it (a fix released upstream as a
patch release inside the range is not detected). Fix 2 is mmlt's policy and
has no guard. Each is applied only when the library it changes is in use.
:func:`apply` runs fixes 1, 3 and 4 on ``import mmlt``; the guards are
:func:`weights_only_fix_needed`, :func:`cpu_distributed_fix_needed`,
:func:`lvis_fix_needed` and
:func:`mmlt.integrations.mmdet.cpu_autocast.needed`.

1. mmengine checkpoints under torch's weights-only loader. Guard: mmengine
   < 0.11 and torch >= 2.6. When: ``import mmlt``. Upstream: mmengine
   #1655. ``torch.load`` defaults to ``weights_only=True`` from torch 2.6, and
   mmengine 0.10.x checkpoints hold a few non-tensor objects (the message
   hub's ``HistoryBuffer`` with numpy arrays, numpy scalars, and
   ``getattr(HistoryBuffer, 'min')``-style references to its statistics
   methods), so ``resume`` and ``load_from`` fail. We do *not* switch
   ``weights_only`` off: we allow-list exactly those objects, and map the
   pickle's ``builtins.getattr`` to a getattr that only returns the statistics
   methods of ``HistoryBuffer``. Any other pickled object is still refused.
2. Weights-only checkpoint loaders (:mod:`mmlt.utils.checkpoint`). Guard:
   none, this is mmlt's policy rather than a version fix (mmengine 0.10.x
   downloads with ``weights_only=False`` and ``Runner.resume`` executes
   ``meta['config']``). When: ``import mmlt``; wraps every scheme of
   mmengine's ``CheckpointLoader``. A refused file raises
   ``CheckpointLoadError``.
3. Distributed training on a machine without a GPU, and the config's
   ``find_unused_parameters`` for any DDP wrapper. Guard: mmengine < 0.11
   (seen in 0.10.7, the latest release). When: ``import mmlt``; patches
   ``mmengine.dist``'s ``_init_dist_*``, ``MMDistributedDataParallel`` and
   ``Runner.wrap_model``. Upstream: mmengine's ``init_dist`` calls
   ``torch.cuda.set_device`` before ``init_process_group`` (fails with "Found
   no NVIDIA driver" even with ``backend='gloo'``), the default backend is
   ``nccl``, and the runner wraps a CPU model in DDP with
   ``device_ids=[local_rank]``, which torch rejects. Without CUDA we skip the
   ``set_device`` step and drop ``device_ids``. ``nccl`` becomes ``gloo``
   (with a warning) only where nothing suggests GPUs: when the machine looks
   like a GPU node (:func:`gpu_signals`) training stops with
   :func:`check_gpu_expected`'s message unless the config asks for ``gloo``
   or ``MMLT_ALLOW_CPU=1`` is set. With CUDA the wrapped functions run
   unchanged. On any machine the runner also gives a config's
   ``find_unused_parameters`` to a DDP wrapper built from
   ``model_wrapper_cfg`` (mmengine only gives it to its default wrapper).
4. lvis-api and numpy >= 1.24. Guard: lvis <= 0.5.3 (the latest release) and
   numpy >= 1.24. When: ``import lvis``: ``import mmlt`` installs an import
   hook (and patches lvis modules already imported), so it does not import
   lvis itself. Upstream: lvis-dataset/lvis-api, ``np.float`` in
   ``lvis/eval.py``; numpy 1.24 removed the aliases, and every LVIS evaluation
   fails at its end. We give the ``lvis`` modules (and only them) a numpy view
   that still has the aliases.
5. mmcv ops on bfloat16 CPU tensors (``--amp`` without a GPU;
   :mod:`mmlt.integrations.mmdet.cpu_autocast`). Guard: mmcv < 2.3 (seen in
   2.1.0) with the ops compiled. When: the MMDetection integration is imported,
   that is on an ``mmlt.X`` lookup under the ``mmdet`` default scope or one
   that only the integration answers (:mod:`mmlt.registry`); never for a
   classification build. Upstream: mmcv's CPU ``nms`` and ``RoIAlign`` kernels
   take float and double only ("expected scalar type Float but found
   BFloat16"); we run their forward and backward in float32.
"""
import contextlib
import functools
import importlib.abc
import importlib.util
import os
import pickle
import re
import shutil
import subprocess
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


def weights_only_fix_needed() -> bool:
    """Fix 1's guard: mmengine < 0.11 and torch >= 2.6 (weights-only
    ``torch.load`` by default)."""
    if not hasattr(torch.serialization, 'add_safe_globals'):
        return False  # torch < 2.4
    return _mmengine_version() < (0, 11) and _torch_version() >= (2, 6)


def _allow_mmengine_checkpoints():
    if not weights_only_fix_needed():
        return False
    torch.serialization.add_safe_globals(checkpoint_safe_globals())
    return True


# ---------------------------------------------------------------------------
# 3. distributed training on CPU-only machines (fix 2, the weights-only
#    loaders, is mmlt.utils.checkpoint)
# ---------------------------------------------------------------------------


#: Set to 1 (or true/yes/on) to train on the CPU on a machine that looks like
#: a GPU node (docs/gpu.md).
ALLOW_CPU_ENV = 'MMLT_ALLOW_CPU'

#: Seconds that ``nvidia-smi`` may take to report the driver version.
NVIDIA_SMI_TIMEOUT = 10.0


def _mmengine_version():
    import mmengine
    from mmengine.utils import digit_version
    return digit_version(mmengine.__version__)


def _cuda_usable():
    return torch.cuda.is_available()


def _lists_devices(value: str) -> bool:
    """Whether a ``CUDA_VISIBLE_DEVICES``-style list names a device.

    ``''``, ``'-1'`` (mmengine's way to ask for the CPU) and Slurm's
    ``'NoDevFiles'`` hide every device; CUDA stops at the first invalid
    entry, so only the first one counts.
    """
    first = value.split(',')[0].strip()
    return bool(first) and not first.startswith('-') and (first.lower()
                                                          != 'nodevfiles')


def _counts_gpus(value: str) -> bool:
    """Whether a Slurm ``[type:]count[,...]`` GPU request asks for a GPU."""
    for item in value.split(','):
        tail = item.strip().rsplit(':', 1)[-1]
        if not tail:
            continue
        digits = re.match(r'\d+', tail)
        if digits is None or int(digits.group()) > 0:
            return True  # a type without a count means one GPU
    return False


def gpu_signals(environ=None) -> list:
    """The signs that this process is meant to run on NVIDIA GPUs.

    Args:
        environ (Mapping, optional): The environment to read. Defaults to
            ``os.environ``.

    Returns:
        list[str]: One readable entry per sign: ``CUDA_VISIBLE_DEVICES``
        naming a device, a Slurm GPU allocation (``SLURM_JOB_GPUS``,
        ``SLURM_STEP_GPUS``, ``SLURM_GPUS*``), an ``nvidia-smi`` on the
        ``PATH``. Empty where nothing suggests GPUs.
    """
    env = os.environ if environ is None else environ
    signals = []
    visible = env.get('CUDA_VISIBLE_DEVICES')
    if visible is not None and _lists_devices(visible):
        signals.append(f'CUDA_VISIBLE_DEVICES={visible}')
    for name in sorted(env):
        value = env[name]
        if name in ('SLURM_JOB_GPUS', 'SLURM_STEP_GPUS'):
            found = _lists_devices(value)
        elif name.startswith('SLURM_GPUS'):
            found = _counts_gpus(value)
        else:
            continue
        if found:
            signals.append(f'{name}={value}')
    if shutil.which('nvidia-smi', path=env.get('PATH')) is not None:
        signals.append('nvidia-smi on the PATH')
    return signals


def nvidia_driver(timeout: float = None) -> str:
    """The NVIDIA driver version that ``nvidia-smi`` reports, for messages.

    Args:
        timeout (float, optional): Seconds to wait for ``nvidia-smi``.
            Defaults to :data:`NVIDIA_SMI_TIMEOUT`.

    Returns:
        str: The version of the first GPU's driver (e.g. ``'550.54.15'``),
        or ``'none found'`` followed by the reason in parentheses.
    """
    exe = shutil.which('nvidia-smi')
    if exe is None:
        return 'none found (no nvidia-smi on the PATH)'
    try:
        out = subprocess.run(
            [exe, '--query-gpu=driver_version', '--format=csv,noheader'],
            capture_output=True,
            text=True,
            timeout=NVIDIA_SMI_TIMEOUT if timeout is None else timeout)
    except subprocess.TimeoutExpired:
        return 'none found (nvidia-smi did not answer)'
    except OSError as error:
        return f'none found (nvidia-smi: {error})'
    lines = [line.strip() for line in out.stdout.splitlines() if line.strip()]
    if out.returncode == 0 and lines:
        return lines[0]
    said = (lines or [line.strip() for line in out.stderr.splitlines()
                      if line.strip()] or [f'exit code {out.returncode}'])
    return f'none found (nvidia-smi: {said[0]})'


def cpu_opted_in() -> bool:
    """Whether training on the CPU was asked for explicitly.

    Returns:
        bool: ``MMLT_ALLOW_CPU`` is set to 1/true/yes/on, or this process is
        in a ``gloo`` process group (a config's
        ``env_cfg.dist_cfg.backend='gloo'`` that :func:`check_gpu_expected`
        already accepted when the group was made).
    """
    value = os.environ.get(ALLOW_CPU_ENV, '').strip().lower()
    if value in ('1', 'true', 'yes', 'on'):
        return True
    dist = torch.distributed
    return (dist.is_available() and dist.is_initialized()
            and dist.get_backend() == 'gloo')


def gpu_missing_message(what: str, signals: list, driver: str,
                        distributed: bool = False) -> str:
    """The error of a GPU node on which torch sees no GPU.

    Args:
        what (str): What would have run on the CPU, e.g. ``'--amp'``.
        signals (list[str]): :func:`gpu_signals`.
        driver (str): :func:`nvidia_driver`.
        distributed (bool): Also name the config's ``gloo`` opt-in.

    Returns:
        str: The message: torch's build and CUDA version, the driver found
        and the ways out.
    """
    cuda = torch.version.cuda
    if cuda is None:
        build = (f'torch {torch.__version__} is a CPU-only build '
                 '(torch.version.cuda is None)')
        fix = 'install a CUDA build of torch that this driver supports'
    else:
        build = (f'torch {torch.__version__} is built for CUDA {cuda} '
                 '(torch.version.cuda)')
        fix = (f'upgrade the NVIDIA driver to one that supports CUDA {cuda}, '
               'or install a torch build for the CUDA version the driver '
               'supports (the header of `nvidia-smi`; docs/gpu_install.md)')
    opt_in = f'set {ALLOW_CPU_ENV}=1'
    if distributed:
        opt_in += " or env_cfg=dict(dist_cfg=dict(backend='gloo'))"
    return (f'mmlt: {what} would run on the CPU, but this machine looks like '
            f'a GPU node ({"; ".join(signals)}) and torch sees no GPU '
            '(torch.cuda.is_available() is False), so training stops here.\n'
            f'  {build}\n'
            f'  NVIDIA driver: {driver}\n'
            f'Fix: {fix}. To train on the CPU on purpose, {opt_in}.')


def check_gpu_expected(what: str, distributed: bool = False) -> None:
    """Stop a run that would fall back to the CPU on a GPU node.

    Nothing happens when torch sees a GPU, when nothing suggests GPUs
    (:func:`gpu_signals`) or when the CPU was asked for
    (:func:`cpu_opted_in`).

    Args:
        what (str): What would run on the CPU, for the message.
        distributed (bool): The message also names the ``gloo`` opt-in.

    Raises:
        RuntimeError: GPUs are expected but torch sees none; the message
            names torch's CUDA version, the driver found and the fixes.
    """
    if _cuda_usable() or cpu_opted_in():
        return
    signals = gpu_signals()
    if signals:
        raise RuntimeError(
            gpu_missing_message(what, signals, nvidia_driver(), distributed))


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
            check_gpu_expected(
                "distributed training with backend='nccl'", distributed=True)
            warnings.warn(
                'mmlt: CUDA is not available, so the distributed backend '
                "'nccl' was replaced by 'gloo' (nothing suggests GPUs here, "
                f'or {ALLOW_CPU_ENV}=1). Set '
                "env_cfg=dict(dist_cfg=dict(backend='gloo')) to silence this.")
            backend = 'gloo'
        else:
            signals = gpu_signals()
            if signals:
                warnings.warn(
                    f'mmlt: training on the CPU with backend={backend!r} as '
                    'configured, although this machine looks like a GPU node '
                    f'({"; ".join(signals)}) and torch sees no GPU.')
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


def _config_find_unused_parameters(wrap_model):
    """``Runner.wrap_model`` that also gives ``cfg.find_unused_parameters``
    to a DDP wrapper built from ``model_wrapper_cfg`` (unless that sets it)."""

    @functools.wraps(wrap_model)
    def wrapper(self, model_wrapper_cfg, model):
        cfg = getattr(self, 'cfg', None)
        if (isinstance(model_wrapper_cfg, dict)
                and 'find_unused_parameters' not in model_wrapper_cfg
                and cfg is not None and 'find_unused_parameters' in cfg):
            from mmengine.registry import MODEL_WRAPPERS
            wrapper_type = MODEL_WRAPPERS.get(
                model_wrapper_cfg.get('type', 'MMDistributedDataParallel'))
            if isinstance(wrapper_type, type) and issubclass(
                    wrapper_type, torch.nn.parallel.DistributedDataParallel):
                model_wrapper_cfg = type(model_wrapper_cfg)(
                    model_wrapper_cfg,
                    find_unused_parameters=cfg.find_unused_parameters)
        return wrap_model(self, model_wrapper_cfg, model)

    wrapper._mmlt_cpu_safe = True
    return wrapper


def cpu_distributed_fix_needed() -> bool:
    """Fix 3's guard: mmengine < 0.11 (re-check these mmengine internals
    before extending it)."""
    return _mmengine_version() < (0, 11)


def _allow_cpu_distributed():
    if not cpu_distributed_fix_needed():
        return False
    from mmengine.dist import utils as dist_utils
    from mmengine.model.wrappers import MMDistributedDataParallel
    from mmengine.runner import Runner
    for name in ('_init_dist_pytorch', '_init_dist_slurm', '_init_dist_mpi'):
        fn = getattr(dist_utils, name, None)
        if fn is not None and not getattr(fn, '_mmlt_cpu_safe', False):
            setattr(dist_utils, name, _cpu_safe_init(fn))
    init = MMDistributedDataParallel.__init__
    if not getattr(init, '_mmlt_cpu_safe', False):
        MMDistributedDataParallel.__init__ = _cpu_safe_ddp_init(init)
    wrap_model = Runner.wrap_model
    if not getattr(wrap_model, '_mmlt_cpu_safe', False):
        Runner.wrap_model = _config_find_unused_parameters(wrap_model)
    return True


# ---------------------------------------------------------------------------
# 4. lvis-api and numpy >= 1.24
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


#: The last lvis-api release, which still uses ``np.float``.
LVIS_LAST_AFFECTED = '0.5.3'


def _lvis_version():
    """lvis-api's installed version (without importing it), or None."""
    import importlib.metadata
    from mmengine.utils import digit_version
    try:
        return digit_version(importlib.metadata.version('lvis'))
    except importlib.metadata.PackageNotFoundError:
        return None


def lvis_fix_needed() -> bool:
    """Fix 4's guard: lvis <= 0.5.3 is installed and numpy >= 1.24 (without
    the aliases)."""
    if hasattr(np, 'float'):
        return False  # numpy < 1.24 still has the aliases
    from mmengine.utils import digit_version
    version = _lvis_version()
    return version is not None and version <= digit_version(
        LVIS_LAST_AFFECTED)


def _fix_lvis_numpy_aliases():
    if not lvis_fix_needed():
        return False
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
