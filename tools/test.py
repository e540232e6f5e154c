"""Test (evaluate) a classification or detection checkpoint.

Examples::

    python tools/test.py CONFIG CHECKPOINT
    python tools/test.py CONFIG CHECKPOINT --out results.pkl --show-dir vis
    bash tools/dist_test.sh CONFIG CHECKPOINT 8
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..')))

import mmlt  # noqa: E402,F401  (applies mmlt.compat)
from mmengine.config import DictAction  # noqa: E402

from mmlt.utils.launch import (apply_common_args, build_runner,  # noqa: E402
                               close_process_group, exit_finished_run,
                               host_of, load_config)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Test a model with mmlt')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='the dir to save logs and metrics')
    parser.add_argument(
        '--out',
        type=str,
        help='dump predictions (.pkl) or, with --out-item metrics, the '
        'metrics (.json/.yaml/.pkl) to this file')
    parser.add_argument(
        '--out-item',
        choices=['pred', 'metrics'],
        default='pred',
        help='what --out stores; defaults to pred')
    parser.add_argument(
        '--show-dir',
        help='directory where painted images are saved; a relative path is '
        'under the work dir (MMDetection: under its timestamped run folder)')
    parser.add_argument(
        '--show', action='store_true', help='show results in a window')
    parser.add_argument(
        '--wait-time', type=float, default=2, help='seconds between images')
    parser.add_argument(
        '--interval', type=int, default=1, help='visualize every n samples')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings of the config, key=value pairs')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def enable_visualization(cfg, args):
    """Turn on the host's visualization hook for --show/--show-dir."""
    if not (args.show or args.show_dir):
        return cfg
    hooks = cfg.setdefault('default_hooks', dict())
    if host_of(cfg) == 'mmdet':
        vis = hooks.setdefault('visualization',
                               dict(type='DetVisualizationHook'))
        vis['draw'] = True
        vis['show'] = args.show
        vis['wait_time'] = args.wait_time
        vis['interval'] = args.interval
        if args.show_dir:
            vis['test_out_dir'] = args.show_dir
    else:
        vis = hooks.setdefault('visualization',
                               dict(type='VisualizationHook'))
        vis['enable'] = True
        vis['show'] = args.show
        vis['wait_time'] = args.wait_time
        vis['interval'] = args.interval
        if args.show_dir:
            # MMPretrain would write a relative out_dir under the cwd
            vis['out_dir'] = osp.join(cfg.work_dir, args.show_dir)
    return cfg


def main(argv=None):
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options)
    cfg = apply_common_args(cfg, args)
    cfg.load_from = args.checkpoint
    cfg = enable_visualization(cfg, args)
    if args.out and args.out_item == 'pred':
        if not args.out.endswith(('.pkl', '.pickle')):
            raise ValueError(f'--out {args.out!r}: predictions are dumped as '
                             'a pickle, use a .pkl file name')
        evaluator = cfg.test_evaluator
        if isinstance(evaluator, dict):
            evaluator = [evaluator]
        # MMDetection's own dumper encodes masks compactly; mmlt's stores
        # per-sample copies (not views into each batch).
        dumper = ('mmdet.DumpDetResults'
                  if host_of(cfg) == 'mmdet' else 'mmlt.DumpResults')
        cfg.test_evaluator = list(evaluator) + [
            dict(type=dumper, out_file_path=args.out)
        ]
    runner = build_runner(cfg)
    metrics = runner.test()
    close_process_group()
    if args.out and args.out_item == 'metrics':
        from mmengine.fileio import dump
        dump(metrics, args.out)
    return metrics


if __name__ == '__main__':
    main()
    exit_finished_run()
