"""Train configs with several seeds and report the mean and spread of their metrics.

Each (config, seed) is one ``tools/train.py`` run in its own process, with
``randomness.seed`` set, in ``WORK_DIR/<config name>/seed<S>``. The metrics of
the last validation of the run (MMEngine's ``vis_data/scalars.json``) are kept
in ``result.json`` there, so finished runs are not redone and an interrupted
run resumes from its last checkpoint. Several studies may share a work dir
(e.g. one per seed, run at the same time): a run being trained by another
live process (``running.pid``) is left to it. At the end ``results.csv`` (one row per
run) and ``summary.md`` (mean, sample standard deviation and range over the
seeds, one row per config) are written to the work dir and the table is
printed.

    # the toy LVIS table of docs/detection.md (3 seeds of 5 detectors)
    python tools/analysis_tools/seed_study.py \\
        configs/lvis/toy/mask-rcnn_r18-tiny_fpn_{toy,la_toy,proco_toy,seesaw_toy,seesaw-proco_toy}-lvis.py \\
        --seeds 0 1 2 --work-dir work_dirs/toy_lvis_seeds \\
        --metrics lvis/bbox_AP lvis/bbox_APr lvis/bbox_APc lvis/bbox_APf \\
                  lvis/bbox_fixed_AP lvis/segm_AP lvis/segm_fixed_AP
"""
import argparse
import csv
import json
import os
import os.path as osp
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('configs', nargs='+', help='config files to train')
    parser.add_argument('--seeds', nargs='+', type=int, default=[0, 1, 2])
    parser.add_argument('--work-dir', required=True)
    parser.add_argument(
        '--metrics', nargs='+', required=True,
        help='keys of the validation metrics to report, e.g. lvis/bbox_AP '
        'or lt/top1')
    parser.add_argument(
        '--names', nargs='+', default=None,
        help='a row name per config (default: the config file names)')
    parser.add_argument(
        '--jobs', type=int, default=1,
        help='runs trained at the same time (default 1)')
    parser.add_argument(
        '--threads', type=int, default=1,
        help='torch threads per run (default 1: on a busy CPU more threads '
        'per run are much slower, not faster)')
    parser.add_argument(
        '--train-args', nargs=argparse.REMAINDER, default=[],
        help='passed on to tools/train.py (put last), e.g. --cfg-options '
        'train_cfg.max_epochs=4')
    args = parser.parse_args(argv)
    if args.names is not None and len(args.names) != len(args.configs):
        parser.error(f'--names has {len(args.names)} entries for '
                     f'{len(args.configs)} configs; give one per config')
    for config in args.configs:
        if not osp.isfile(config):
            parser.error(f'config file {config!r} does not exist')
    if args.jobs < 1 or args.threads < 1:
        parser.error('--jobs and --threads must be >= 1')
    return args


def config_name(config):
    return osp.splitext(osp.basename(config))[0]


def last_metrics(run_dir, keys):
    """The last line of the run's ``scalars.json`` files holding ``keys[0]``
    (the metrics of its last validation), or ``None``."""
    found = None
    for timestamp in sorted(os.listdir(run_dir)):
        scalars = osp.join(run_dir, timestamp, 'vis_data', 'scalars.json')
        if not osp.isfile(scalars):
            continue
        with open(scalars) as f:
            for line in f:
                record = json.loads(line)
                if keys[0] in record:
                    found = record
    if found is None:
        return None
    missing = [key for key in keys if key not in found]
    if missing:
        raise KeyError(f'{run_dir}: the validation logged no {missing}; it '
                       f'logged {sorted(found)}')
    return {key: float(found[key]) for key in keys}


def _claim(run_dir):
    """Mark ``run_dir`` as trained by this process; False if another live
    process has it (several studies may share a work dir)."""
    lock = osp.join(run_dir, 'running.pid')
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                with open(lock) as f:
                    os.kill(int(f.read().strip() or 0), 0)
                return False  # its owner is alive
            except (ProcessLookupError, ValueError):
                os.remove(lock)  # left by a process that died
                continue
        with os.fdopen(fd, 'w') as f:
            f.write(str(os.getpid()))
        return True
    return False


def _end_with_parent():
    """In the training process (Linux): end it when the study that started
    it dies, so a killed study leaves no run that another study would take
    for free and train a second time in the same directory."""
    try:
        import ctypes
        import signal
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def run_one(config, seed, args):
    """Train ``config`` with ``seed`` (resumed if interrupted); its row, or
    None if another process is training it."""
    run_dir = osp.join(args.work_dir, config_name(config), f'seed{seed}')
    result_file = osp.join(run_dir, 'result.json')
    if osp.isfile(result_file):
        with open(result_file) as f:
            return json.load(f)
    os.makedirs(run_dir, exist_ok=True)
    if not _claim(run_dir):
        print(f'{config_name(config)} seed {seed}: trained by another '
              'process, left out of this summary', flush=True)
        return None
    try:
        return _train(config, seed, args, run_dir, result_file)
    finally:
        os.remove(osp.join(run_dir, 'running.pid'))


def _train(config, seed, args, run_dir, result_file):
    command = [
        sys.executable, osp.join(REPO, 'tools', 'train.py'), config,
        '--work-dir', run_dir
    ]
    if osp.isfile(osp.join(run_dir, 'last_checkpoint')):
        command.append('--resume')
    train_args = list(args.train_args)
    seed_option = f'randomness.seed={seed}'
    if '--cfg-options' in train_args:
        train_args.insert(train_args.index('--cfg-options') + 1, seed_option)
    else:
        train_args += ['--cfg-options', seed_option]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads),
               MKL_NUM_THREADS=str(args.threads))
    start = time.time()
    with open(osp.join(run_dir, 'train.out'), 'a') as out:
        code = subprocess.call(command + train_args, env=env, stdout=out,
                               stderr=subprocess.STDOUT, cwd=REPO,
                               preexec_fn=_end_with_parent)
    if code != 0:
        raise RuntimeError(f'training {config} with seed {seed} failed '
                           f'(exit {code}); see {run_dir}/train.out')
    metrics = last_metrics(run_dir, args.metrics)
    if metrics is None:
        raise RuntimeError(
            f'{run_dir}: no validation logged {args.metrics[0]!r}; does the '
            'config validate at the end of training (train_cfg.val_interval)?')
    row = dict(config=config_name(config), seed=seed, **metrics,
               minutes=round((time.time() - start) / 60, 2))
    with open(result_file, 'w') as f:
        json.dump(row, f, indent=1)
    return row


def summarise(rows, configs, names, keys):
    """Markdown table: per config, mean and std (range) over the seeds."""
    header = '| config | seeds | ' + ' | '.join(keys) + ' |'
    lines = [header, '|' + ' --- |' * (len(keys) + 2)]
    for config, name in zip(configs, names):
        runs = [row for row in rows if row['config'] == config_name(config)]
        if not runs:
            continue
        cells = []
        for key in keys:
            values = [row[key] for row in runs]
            std = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f'{statistics.mean(values):.3f} +- {std:.3f} '
                         f'({min(values):.3f}-{max(values):.3f})')
        lines.append(f'| {name} | {len(runs)} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def main(argv=None):
    args = parse_args(argv)
    args.configs = [osp.abspath(config) for config in args.configs]
    os.makedirs(args.work_dir, exist_ok=True)
    args.work_dir = osp.abspath(args.work_dir)
    names = args.names or [config_name(config) for config in args.configs]
    # seed-major: every config gets its first seed before any gets a second
    jobs = [(config, seed) for seed in args.seeds for config in args.configs]

    def run(job):
        row = run_one(*job, args)
        if row is None:
            return None
        print(f'{row["config"]} seed {row["seed"]}: ' + ', '.join(
            f'{key}={row[key]:.3f}' for key in args.metrics), flush=True)
        return row

    with ThreadPoolExecutor(args.jobs) as pool:
        rows = [row for row in pool.map(run, jobs) if row is not None]
    with open(osp.join(args.work_dir, 'results.csv'), 'w', newline='') as f:
        writer = csv.DictWriter(
            f, fieldnames=['config', 'seed', *args.metrics, 'minutes'])
        writer.writeheader()
        writer.writerows(rows)
    table = summarise(rows, args.configs, names, args.metrics)
    with open(osp.join(args.work_dir, 'summary.md'), 'w') as f:
        f.write(table + '\n')
    print(table)


if __name__ == '__main__':
    main()
