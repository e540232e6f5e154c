"""Shared logic of ``tools/train.py`` and ``tools/test.py``."""
import os.path as osp

from mmengine.config import Config


def load_config(path, cfg_options=None):
    """Load a config file and merge ``--cfg-options`` into it.

    Raises:
        FileNotFoundError: the config file does not exist.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(
            f'config file {path!r} does not exist; configs live under '
            f"{osp.join(osp.dirname(osp.dirname(__file__)), '..', 'configs')}")
    cfg = Config.fromfile(path)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    return cfg


def validates_on_test_set(cfg) -> bool:
    """Whether a config's validation dataset reads its test data (then a
    choice made on validation is a choice made on the test set): the same
    dataset, ``split='test'``, or the test split file."""
    val = (cfg.get('val_dataloader') or {}).get('dataset')
    test = (cfg.get('test_dataloader') or {}).get('dataset') or {}
    if not val:
        return False
    if val == test or val.get('split') == 'test':
        return True
    return bool(val.get('ann_file')) and all(
        val.get(key) == test.get(key) for key in ('ann_file', 'data_root'))


def host_of(cfg):
    """``'mmdet'``, ``'mmpretrain'`` or ``'mmengine'``: whose config it is."""
    scope = cfg.get('default_scope', None) or 'mmengine'
    return scope


def apply_common_args(cfg, args):
    """Launcher and work dir, the same for training and testing."""
    cfg.launcher = args.launcher
    if getattr(args, 'work_dir', None) is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(cfg.filename))[0])
    return cfg


def enable_amp(cfg, dtype=None):
    """Switch the optimizer wrapper to ``mmlt.AmpOptimWrapper``: float16
    with dynamic loss scaling or bfloat16 autocast (``dtype``; by default
    float16 on CUDA, bfloat16 on a CPU, or the config's
    ``optim_wrapper.dtype``); both skip steps with non-finite gradients."""
    optim_wrapper = cfg.optim_wrapper.get('type', 'OptimWrapper')
    if dtype is not None:
        cfg.optim_wrapper.dtype = dtype
    if optim_wrapper in ('mmlt.AmpOptimWrapper', 'AmpOptimWrapper'):
        cfg.optim_wrapper.type = 'mmlt.AmpOptimWrapper'
        return cfg
    if optim_wrapper not in ('OptimWrapper', 'mmengine.OptimWrapper',
                             'mmlt.SkipNonFiniteOptimWrapper'):
        raise ValueError(
            f'--amp replaces OptimWrapper, but the config uses '
            f'optim_wrapper.type={optim_wrapper!r}; set '
            "type='mmlt.AmpOptimWrapper' in the config instead.")
    cfg.optim_wrapper.type = 'mmlt.AmpOptimWrapper'
    return cfg


def build_runner(cfg):
    """Build the runner the config asks for (``runner_type``) or mmengine's."""
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner
    if 'runner_type' in cfg:
        return RUNNERS.build(cfg)
    return Runner.from_cfg(cfg)


_closed_process_group = False


def close_process_group() -> None:
    """Destroy the default process group at the end of a distributed run.

    MMEngine leaves it open; a gloo process that exits with it open can end
    in "terminate called without an active exception" (SIGABRT, exit code
    -6) after a successful run, seen intermittently with torch 2.14.
    """
    global _closed_process_group
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
        _closed_process_group = True


def exit_finished_run() -> None:
    """End a ``tools/`` script whose distributed run finished, without the
    interpreter's teardown; a no-op after a single-process run.

    Even with the process group destroyed, a gloo process still aborted
    now and then while the interpreter tore down its C++ objects ("terminate
    called without an active exception", SIGABRT, exit code -6, no Python
    frame on the stack): 1 in 32 two-process runs of a tiny config, after
    the last checkpoint was written. So a finished distributed run runs
    Python's exit handlers itself (log files, visualizer backends), flushes
    its output and leaves with ``os._exit(0)``. Call it only from a script's
    ``__main__`` block, never from a library or a test process.
    """
    if not _closed_process_group:
        return
    import atexit
    import os
    import sys
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass
    os._exit(0)
