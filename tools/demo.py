"""The README's main job: ProCo on Fashion-MNIST-LT (IF 100) on the CPU.

Trains ``configs/proco_fashionmnistlt.py`` with the ordinary runner (progress
is logged as it goes), evaluates on the balanced 10,000 test images, prints
overall / many / medium / few top-1 accuracy and writes the per-class
accuracy CSV and its plot into the work dir.

    python tools/demo.py [--config CONFIG] [--work-dir DIR] [--cfg-options ...]
"""
import argparse
import os.path as osp
import sys
import time

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..')))

import mmlt  # noqa: E402,F401
from mmengine.config import DictAction  # noqa: E402

from mmlt.utils.launch import build_runner, load_config  # noqa: E402

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..'))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        '--config',
        default=osp.join(REPO, 'configs', 'proco_fashionmnistlt.py'))
    parser.add_argument('--work-dir', default=None)
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options)
    name = osp.splitext(osp.basename(args.config))[0]
    cfg.work_dir = args.work_dir or osp.join(REPO, 'work_dirs', name)
    cfg.launcher = 'none'
    csv_path = osp.join(cfg.work_dir, 'per_class_accuracy.csv')
    for key in ('val_evaluator', 'test_evaluator'):
        if cfg.get(key) and cfg[key].get('type') == 'mmlt.LongTailAccuracy':
            cfg[key]['out_file'] = csv_path

    # evaluate once, after training, on the balanced test set (runner.test
    # below); no validation loop, which would evaluate the same set again
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None

    start = time.time()
    runner = build_runner(cfg)
    runner.train()
    metrics = runner.test()
    elapsed = time.time() - start

    def pick(suffix):
        for key, value in metrics.items():
            if key.split('/')[-1] == suffix:
                return value
        return float('nan')

    print('\n' + '=' * 60)
    print(f'{name}: trained and evaluated in {elapsed / 60:.1f} min')
    print(f'  top-1 (balanced test set): {pick("top1"):6.2f}')
    for group in ('many', 'medium', 'few'):
        print(f'  {group:<7} classes:           {pick(group):6.2f}')
    if osp.exists(csv_path):
        from tools.analysis_tools.plot_per_class_acc import main as plot_main
        png = osp.join(cfg.work_dir, 'per_class_accuracy.png')
        plot_main([csv_path, '--out', png])
        print(f'  per-class accuracy: {csv_path}')
        print(f'  plot:               {png}')
    print('=' * 60)
    return metrics


if __name__ == '__main__':
    main()
