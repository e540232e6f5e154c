"""Train a classification (MMPretrain) or detection (MMDetection) config.

One entry point for both hosts: the config's ``default_scope`` picks the
registries. Examples::

    python tools/train.py configs/proco_fashionmnistlt.py
    python tools/train.py CONFIG --work-dir work_dirs/x --resume
    bash tools/dist_train.sh CONFIG 8
"""
import argparse
import os
import os.path as osp
import sys

# Let `python tools/train.py` work from a source checkout without installing.
sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..')))

import mmlt  # noqa: E402,F401  (applies mmlt.compat)
from mmengine.config import DictAction  # noqa: E402
from mmlt.utils.launch import (apply_common_args, build_runner,  # noqa: E402
                               close_process_group, exit_finished_run,
                               load_config)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Train a model with mmlt')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='resume from the given checkpoint; without a value, resume from '
        'the latest checkpoint in the work dir')
    parser.add_argument(
        '--amp',
        action='store_true',
        help='mixed precision: float16 with loss scaling on CUDA, bfloat16 '
        'on a CPU, unless --amp-dtype says otherwise; steps with NaN/Inf '
        'gradients are skipped (docs/gpu.md)')
    parser.add_argument(
        '--amp-dtype',
        choices=['float16', 'bfloat16'],
        help='mixed precision in this dtype (implies --amp): float16 with '
        'loss scaling (CUDA only) or bfloat16 without (CUDA or CPU; the '
        'natural choice on A100/H100)')
    parser.add_argument(
        '--no-validate',
        action='store_true',
        help='do not evaluate checkpoints during training')
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='scale the learning rate by the actual batch size divided by '
        'auto_scale_lr.base_batch_size of the config')
    parser.add_argument(
        '--no-pin-memory',
        action='store_true',
        help='do not pin memory in the data loaders')
    parser.add_argument(
        '--no-persistent-workers',
        action='store_true',
        help='do not use persistent workers in the data loaders')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings of the config, key=value pairs, e.g. '
        'train_dataloader.batch_size=32 "model.head.loss.tau=0.1"')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    # torch.distributed.launch passes --local_rank, torchrun sets LOCAL_RANK
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def merge_args(cfg, args):
    """Merge command line arguments into the config."""
    cfg = apply_common_args(cfg, args)
    if args.no_validate:
        cfg.val_cfg = None
        cfg.val_dataloader = None
        cfg.val_evaluator = None
    if args.amp or args.amp_dtype:
        from mmlt.utils.launch import enable_amp
        enable_amp(cfg, args.amp_dtype)
    if args.auto_scale_lr:
        cfg.setdefault('auto_scale_lr', dict())
        cfg.auto_scale_lr.enable = True
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        if cfg.get(loader) is None:
            continue
        if args.no_pin_memory:
            cfg[loader]['pin_memory'] = False
        if args.no_persistent_workers:
            cfg[loader]['persistent_workers'] = False
    return cfg


def main(argv=None):
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options)
    cfg = merge_args(cfg, args)
    if cfg.get('train_cfg') is None:
        raise ValueError(
            f'{args.config} has no train_cfg, so there is nothing to train: '
            'it is evaluated as it is (tau-norm: choose tau with tools/'
            'analysis_tools/tau_norm_search.py, then run tools/test.py; see '
            "the config's header)")
    runner = build_runner(cfg)
    runner.train()
    close_process_group()
    return runner


if __name__ == '__main__':
    main()
    exit_finished_run()
