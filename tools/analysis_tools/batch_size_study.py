"""ProCo's batch-size study: two-stage contrastive training at several batch sizes.

The first experiment of ProCo (Du et al., TPAMI 2024): supervised contrastive
learning on long-tailed data depends on the batch size, because small batches
rarely hold tail-class samples; ProCo contrasts against per-class vMF
distributions instead and should not. For each method, batch size and seed:

1. stage 1 trains the backbone and projector with the contrastive loss alone
   (``configs/two_stage/{method}_stage1_*.py``), with the learning rate scaled
   linearly with the batch size (MMEngine's ``auto_scale_lr``:
   ``lr = base_lr * batch / base_batch``) and the same number of epochs at
   every batch size;
2. stage 2 trains a linear classifier on the frozen backbone
   (``configs/two_stage/linear-probe_*.py``, fixed batch and schedule, so the
   probe is the same for every stage-1 run) with each ``--probe-losses``
   entry, and tests it with ``mmlt.LongTailAccuracy``.

A progress line is printed per run. Finished runs are not redone (each writes
``result.json``) and an interrupted stage 1 resumes from its last checkpoint,
so the command can be re-run after a crash. ``results.csv`` and
``batch_size_study.png`` (top-1 against batch size on a log-2 axis, one line
per method; many/medium/few in a second panel) are rewritten at the end.

    python tools/analysis_tools/batch_size_study.py                # Fashion-MNIST-LT, CPU
    python tools/analysis_tools/batch_size_study.py --seeds 0 1 2
    python tools/analysis_tools/batch_size_study.py --dataset cifar100lt  # the paper's setting, GPU
"""
import argparse
import csv
import json
import os
import os.path as osp
import sys
import time
from collections import defaultdict

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
sys.path.insert(0, REPO)

import mmlt  # noqa: E402,F401
import torch  # noqa: E402
from mmengine.config import DictAction  # noqa: E402

from mmlt.utils.launch import build_runner, load_config  # noqa: E402

METHODS = ('supcon', 'bcl', 'proco')
METHOD_NAMES = dict(supcon='SupCon', bcl='BCL', proco='ProCo')
PROBE_LOSSES = dict(
    ce=dict(type='CrossEntropyLoss', loss_weight=1.0),
    la=dict(type='mmlt.LogitAdjustLoss', tau=1.0))
PRESETS = {
    'fashionmnistlt': ('configs/two_stage/{method}_stage1_fashionmnistlt.py',
                       'configs/two_stage/linear-probe_fashionmnistlt.py'),
    'cifar100lt': ('configs/two_stage/{method}_stage1_r32_cifar100lt.py',
                   'configs/two_stage/linear-probe_r32_cifar100lt.py'),
}
GROUPS = ('many', 'medium', 'few')
CSV_FIELDS = ('method', 'batch_size', 'seed', 'stage1_lr', 'stage1_epochs',
              'probe_loss', 'top1', 'many', 'medium', 'few', 'stage1_min',
              'probe_min')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--dataset', choices=sorted(PRESETS),
                        default='fashionmnistlt')
    parser.add_argument('--methods', nargs='+', choices=METHODS,
                        default=list(METHODS))
    parser.add_argument('--batch-sizes', nargs='+', type=int,
                        default=[16, 32, 64, 128, 256])
    parser.add_argument('--seeds', nargs='+', type=int, default=[0])
    parser.add_argument(
        '--stage1-epochs', type=int, default=None,
        help='epochs of stage 1 at every batch size (default: the config)')
    parser.add_argument(
        '--probe-losses', nargs='+', choices=sorted(PROBE_LOSSES),
        default=['ce', 'la'],
        help="stage-2 classifier losses: 'ce' (SupCon's linear evaluation, "
        "the probe config's default) and/or 'la' (logit adjustment)")
    parser.add_argument('--work-dir', default=None,
                        help='default: work_dirs/batch_size_study_<dataset>')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction, default={},
        help='overrides for both stages (e.g. a data root)')
    parser.add_argument('--stage1-options', nargs='+', action=DictAction,
                        default={}, help='overrides for stage 1 only')
    parser.add_argument('--probe-options', nargs='+', action=DictAction,
                        default={}, help='overrides for stage 2 only')
    parser.add_argument(
        '--threads', type=int, default=1,
        help='torch intra-op threads (default 1: these small CPU models '
        'gain little from more, and lose badly when other jobs share the '
        'cores)')
    parser.add_argument('--verbose', action='store_true',
                        help="keep MMEngine's INFO logs on the console")
    args = parser.parse_args(argv)
    if min(args.batch_sizes) < 2:
        parser.error('--batch-sizes must be >= 2 (a contrastive batch needs '
                     'two samples)')
    if args.stage1_epochs is not None and args.stage1_epochs < 1:
        parser.error('--stage1-epochs must be >= 1')
    return args


def set_max_epochs(cfg, epochs):
    """Train for ``epochs``, stretching the schedulers that end with the
    run (their ``end`` and, for cosine decay, ``T_max``)."""
    old = cfg.train_cfg.max_epochs
    cfg.train_cfg.max_epochs = epochs
    if cfg.train_cfg.get('val_interval', 1) > old:
        cfg.train_cfg.val_interval = epochs + 1
    schedulers = []
    for scheduler in cfg.param_scheduler:
        if scheduler.get('begin', 0) >= epochs:
            continue  # starts after the shortened run (a 1-epoch run)
        if scheduler.get('end') == old:
            scheduler['end'] = epochs
            if 'T_max' in scheduler:
                scheduler['T_max'] = epochs - scheduler.get('begin', 0)
        schedulers.append(scheduler)
    cfg.param_scheduler = schedulers


def _configure(cfg, work_dir, seed, name, verbose):
    cfg.work_dir = work_dir
    cfg.launcher = 'none'
    cfg.randomness = dict(seed=seed, deterministic=False)
    # one runner per stage in this process: unique logger/visualizer names
    cfg.experiment_name = f'{name}_{time.strftime("%Y%m%d_%H%M%S")}'
    if not verbose:
        cfg.log_level = 'WARNING'
    return cfg


def train_stage1(stage1_config, method, batch, seed, run_dir, args):
    """Stage 1 (resumed if a checkpoint exists); its last checkpoint and
    the learning rate it trained with."""
    cfg = load_config(stage1_config, {**args.cfg_options,
                                      **args.stage1_options})
    if args.stage1_epochs is not None:
        set_max_epochs(cfg, args.stage1_epochs)
    epochs = cfg.train_cfg.max_epochs
    cfg.train_dataloader.batch_size = batch
    # the linear scaling rule, applied by MMEngine's runner
    cfg.auto_scale_lr = dict(enable=True,
                             base_batch_size=cfg.auto_scale_lr.base_batch_size)
    lr = cfg.optim_wrapper.optimizer.lr * batch / \
        cfg.auto_scale_lr.base_batch_size
    work_dir = osp.join(run_dir, 'stage1')
    checkpoint = osp.join(work_dir, f'epoch_{epochs}.pth')
    if not osp.isfile(checkpoint):
        _configure(cfg, work_dir, seed, f'{method}_b{batch}_s{seed}_stage1',
                   args.verbose)
        cfg.resume = True  # continue an interrupted stage 1, if any
        build_runner(cfg).train()
    return checkpoint, lr, epochs


def check_stage1_checkpoint(checkpoint):
    """Refuse a stage-1 checkpoint that holds no backbone weights.

    The probe's backbone is initialised from the ``backbone.`` weights of
    ``checkpoint`` (``init_cfg=dict(type='Pretrained')``, which skips
    missing keys with a warning); without them the probe would train on a
    random backbone. The file is read by MMEngine's ``CheckpointLoader``,
    weights-only (see :mod:`mmlt.utils.checkpoint`), so a file with pickled
    objects or a truncated file raises
    :class:`~mmlt.utils.checkpoint.CheckpointLoadError` naming it.

    Returns:
        int: The number of backbone tensors in the checkpoint.
    """
    from mmengine.runner import CheckpointLoader
    loaded = CheckpointLoader.load_checkpoint(checkpoint, map_location='cpu')
    state_dict = loaded.get('state_dict', loaded) if isinstance(
        loaded, dict) else {}
    backbone = [key for key, value in state_dict.items()
                if isinstance(key, str) and key.startswith('backbone.')
                and isinstance(value, torch.Tensor)]
    if not backbone:
        raise ValueError(
            f'stage-1 checkpoint {checkpoint} holds no backbone.* weights: '
            'the linear probe would train on a randomly initialised '
            'backbone. Pass the checkpoint that stage 1 wrote.')
    return len(backbone)


def train_probe(probe_config, checkpoint, loss, seed, run_dir, name, args):
    """Stage 2 on the frozen backbone of ``checkpoint``; its test metrics."""
    check_stage1_checkpoint(checkpoint)
    cfg = load_config(probe_config, {**args.cfg_options,
                                     **args.probe_options})
    cfg.model.backbone.init_cfg = dict(
        type='Pretrained', checkpoint=checkpoint, prefix='backbone.')
    cfg.model.head.loss = dict(PROBE_LOSSES[loss])
    work_dir = osp.join(run_dir, f'probe_{loss}')
    _configure(cfg, work_dir, seed, f'{name}_probe_{loss}', args.verbose)
    if cfg.get('test_evaluator') and \
            cfg.test_evaluator.get('type') == 'mmlt.LongTailAccuracy':
        cfg.test_evaluator.out_file = osp.join(work_dir,
                                               'per_class_accuracy.csv')
    runner = build_runner(cfg)
    runner.train()
    metrics = runner.test()
    return {
        key: float(metrics[f'lt/{key}'])
        for key in ('top1', ) + GROUPS
    }


def run_one(presets, method, batch, seed, args, work_dir):
    """Both stages of one (method, batch, seed); CSV rows, one per probe
    loss. A run with a ``result.json`` is read back, not redone."""
    name = f'{method}_b{batch}_s{seed}'
    run_dir = osp.join(work_dir, name)
    result_file = osp.join(run_dir, 'result.json')
    if osp.isfile(result_file):
        with open(result_file) as f:
            rows = json.load(f)
        if {row['probe_loss'] for row in rows} >= set(args.probe_losses):
            return [row for row in rows
                    if row['probe_loss'] in args.probe_losses], True
    stage1_config, probe_config = (osp.join(REPO, p) for p in presets)
    start = time.time()
    checkpoint, lr, epochs = train_stage1(
        stage1_config.format(method=method), method, batch, seed, run_dir,
        args)
    stage1_min = (time.time() - start) / 60
    rows = []
    for loss in args.probe_losses:
        start = time.time()
        metrics = train_probe(probe_config, checkpoint, loss, seed, run_dir,
                              name, args)
        rows.append(dict(method=method, batch_size=batch, seed=seed,
                         stage1_lr=lr, stage1_epochs=epochs,
                         probe_loss=loss, **metrics,
                         stage1_min=round(stage1_min, 2),
                         probe_min=round((time.time() - start) / 60, 2)))
    with open(result_file, 'w') as f:
        json.dump(rows, f, indent=1)
    return rows, False


def write_csv(rows, path):
    with open(path, 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for row in rows:
            writer.writerow({key: row[key] for key in CSV_FIELDS})


def summarise(rows):
    """``{(probe_loss, method): {batch: {metric: [values over seeds]}}}``."""
    table = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for row in rows:
        for key in ('top1', ) + GROUPS:
            table[row['probe_loss'], row['method']][row['batch_size']][
                key].append(float(row[key]))
    return table


def plot(rows, path):
    """Top-1 against batch size (log-2 x), one line per method, mean over
    seeds with min-max bars; many/medium/few in the second panel; one row
    of panels per probe loss."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import numpy as np

    table = summarise(rows)
    losses = sorted({loss for loss, _ in table})
    methods = [m for m in METHODS if any(m == k[1] for k in table)]
    fig, axes = plt.subplots(len(losses), 2, figsize=(11, 4.2 * len(losses)),
                             squeeze=False)
    colours = dict(supcon='tab:blue', bcl='tab:orange', proco='tab:green')
    styles = dict(many='-', medium='--', few=':')
    for row_axes, loss in zip(axes, losses):
        for method in methods:
            per_batch = table.get((loss, method))
            if not per_batch:
                continue
            batches = sorted(per_batch)
            for ax, keys in ((row_axes[0], ('top1', )), (row_axes[1],
                                                         GROUPS)):
                for key in keys:
                    values = [np.asarray(per_batch[b][key]) for b in batches]
                    mean = np.array([v.mean() for v in values])
                    err = np.array([[mean[i] - v.min(), v.max() - mean[i]]
                                    for i, v in enumerate(values)]).T
                    label = METHOD_NAMES[method] if key == 'top1' else \
                        f'{METHOD_NAMES[method]} {key}'
                    ax.errorbar(batches, mean, yerr=err, capsize=3,
                                marker='o', color=colours[method],
                                linestyle=styles.get(key, '-'), label=label)
        for ax, title in zip(row_axes, ('top-1', 'many / medium / few')):
            ax.set_xscale('log', base=2)
            batches = sorted({int(r['batch_size']) for r in rows})
            ax.set_xticks(batches)
            ax.set_xticklabels([str(b) for b in batches])
            ax.set_xlabel('stage-1 batch size')
            ax.set_ylabel('accuracy (%)')
            ax.set_title(f'{title}, linear probe with {loss.upper()}')
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7 if title != 'top-1' else 9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    work_dir = args.work_dir or osp.join(
        REPO, 'work_dirs', f'batch_size_study_{args.dataset}')
    os.makedirs(work_dir, exist_ok=True)
    presets = PRESETS[args.dataset]
    jobs = [(m, b, s) for s in args.seeds for m in args.methods
            for b in sorted(args.batch_sizes)]
    rows = []
    start = time.time()
    for i, (method, batch, seed) in enumerate(jobs, 1):
        run_start = time.time()
        run_rows, reused = run_one(presets, method, batch, seed, args,
                                   work_dir)
        rows.extend(run_rows)
        scores = ', '.join(
            f"{r['probe_loss']}: top-1 {r['top1']:.2f} (many {r['many']:.1f}"
            f" / medium {r['medium']:.1f} / few {r['few']:.1f})"
            for r in run_rows)
        took = 'done before' if reused else \
            f'{(time.time() - run_start) / 60:.1f} min'
        print(f'[{i}/{len(jobs)}] {METHOD_NAMES[method]:<6} batch '
              f'{batch:>4} seed {seed}: {scores} [{took}]', flush=True)
    csv_path = osp.join(work_dir, 'results.csv')
    png_path = osp.join(work_dir, 'batch_size_study.png')
    write_csv(rows, csv_path)
    plot(rows, png_path)
    print(f'{len(jobs)} runs in {(time.time() - start) / 60:.1f} min; '
          f'{csv_path}, {png_path}')
    return rows


if __name__ == '__main__':
    main()
