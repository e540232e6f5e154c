"""Train configs with several seeds and report the mean and spread of their metrics.

Each (config, seed) is one ``tools/train.py`` run in its own process, with
``randomness.seed`` set, in ``WORK_DIR/<config name>/seed<S>``. Its result is
kept in ``result*.json`` there, so finished runs are not redone and an
interrupted run resumes from its last checkpoint. Several studies may share a
work dir (e.g. one per seed, run at the same time): a run being trained by
another live process (``running.pid``) is left to it. At the end
``results.csv`` (one row per run) and ``summary.md`` (mean, sample standard
deviation and range over the seeds, one row per config) are written to the
work dir and the table is printed.

Which number a run reports (docs/protocol.md):

* default: the metrics of its last validation (MMEngine's
  ``vis_data/scalars.json``), for configs that validate once, at the end
  (a run stopped during that validation is validated again from its last
  checkpoint);
* ``--evaluate test``: ``tools/test.py`` on a checkpoint of the run, chosen
  by ``--select last`` (the last one, default) or ``--select best`` (the
  best on the *validation* split by ``--select-metric``; refused for a
  config whose validation set is its test set);
* ``--last-k K``: the median and the mean of the run's last K validations
  (the semi-supervised protocol of DASO: the median of the last 20).

``{seed}`` in ``--train-args`` and ``--checkpoint`` becomes the run's seed,
e.g. the stage-1 checkpoint of the same seed for a decoupled classifier.
A config without ``train_cfg`` (tau-norm: post hoc) is not trained: its runs
test ``--checkpoint`` (with ``--evaluate test``).

    # the toy LVIS table of docs/detection.md (3 seeds of 5 detectors)
    python tools/analysis_tools/seed_study.py \\
        configs/lvis/toy/mask-rcnn_r18-tiny_fpn_{toy,la_toy,proco_toy,seesaw_toy,seesaw-proco_toy}-lvis.py \\
        --seeds 0 1 2 --work-dir work_dirs/toy_lvis_seeds \\
        --metrics lvis/bbox_AP lvis/bbox_APr lvis/bbox_APc lvis/bbox_APf \\
                  lvis/bbox_fixed_AP lvis/segm_AP lvis/segm_fixed_AP
    # cRT on the CE backbone of the same seed, tested at its last checkpoint
    CE=work_dirs/fmnist/ce_fashionmnistlt/seed{seed}/epoch_20.pth
    python tools/analysis_tools/seed_study.py \\
        configs/decoupled/crt_fashionmnistlt.py --work-dir work_dirs/fmnist \\
        --metrics lt/top1 lt/many lt/medium lt/few --evaluate test \\
        --train-args --cfg-options model.backbone.init_cfg.checkpoint=$CE
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
        help='keys of the metrics to report, e.g. lvis/bbox_AP or lt/top1')
    parser.add_argument(
        '--names', nargs='+', default=None,
        help='a row name per config (default: the config file names)')
    parser.add_argument(
        '--evaluate', choices=['val', 'test'], default='val',
        help='val (default): the metrics of the last validation; test: '
        'tools/test.py on the checkpoint that --select picks')
    parser.add_argument(
        '--select', choices=['last', 'best'], default='last',
        help='with --evaluate test: the last checkpoint (default) or the '
        'best on the validation split by --select-metric')
    parser.add_argument(
        '--select-metric', default=None,
        help='validation metric of --select best (default: the first of '
        '--metrics); higher is better')
    parser.add_argument(
        '--last-k', type=int, default=None,
        help='report the median and the mean of the last K validations of '
        'each run (semi-supervised protocol: K=20)')
    parser.add_argument(
        '--checkpoint', default=None,
        help='for configs without train_cfg (post hoc, e.g. tau-norm): the '
        'checkpoint to test, {seed} replaced by the seed')
    parser.add_argument(
        '--jobs', type=int, default=1,
        help='runs trained at the same time (default 1)')
    parser.add_argument(
        '--threads', type=int, default=1,
        help='torch threads per run (default 1: on a busy CPU more threads '
        'per run are much slower, not faster)')
    parser.add_argument(
        '--train-args', nargs=argparse.REMAINDER, default=[],
        help='passed on to tools/train.py (put last), {seed} replaced by the '
        'seed, e.g. --cfg-options train_cfg.max_epochs=4')
    args = parser.parse_args(argv)
    check_args(parser, args)
    return args


def check_args(parser, args):
    """Refuse combinations that have no defined protocol."""
    if args.names is not None and len(args.names) != len(args.configs):
        parser.error(f'--names has {len(args.names)} entries for '
                     f'{len(args.configs)} configs; give one per config')
    for config in args.configs:
        if not osp.isfile(config):
            parser.error(f'config file {config!r} does not exist')
    if args.jobs < 1 or args.threads < 1:
        parser.error('--jobs and --threads must be >= 1')
    if args.select == 'best' and args.evaluate != 'test':
        parser.error('--select best reports the test metrics of the '
                     'checkpoint chosen on validation: add --evaluate test')
    if args.last_k is not None and (args.last_k < 1
                                    or args.evaluate != 'val'):
        parser.error('--last-k K needs K >= 1 and reads validations: drop '
                     '--evaluate test')
    if args.checkpoint is not None and args.evaluate != 'test':
        parser.error('--checkpoint is tested: add --evaluate test')
    args.select_metric = args.select_metric or args.metrics[0]


def config_name(config):
    return osp.splitext(osp.basename(config))[0]


def with_seed(items, seed):
    """``items`` (strings) with ``{seed}`` replaced by ``seed``."""
    return [item.replace('{seed}', str(seed)) for item in items]


# ---------------------------------------------------------------- statistics
def mean_std(values):
    """Mean and sample standard deviation (0 for one value)."""
    values = [float(v) for v in values]
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return statistics.mean(values), std


def last_k_stats(values, k):
    """Median and mean of the last ``k`` of ``values`` (in order)."""
    if len(values) < k:
        raise ValueError(f'{len(values)} evaluations logged, fewer than '
                         f'--last-k {k}; validate more often '
                         '(train_cfg.val_interval) or lower --last-k')
    tail = [float(v) for v in values[-k:]]
    return dict(median=statistics.median(tail), mean=statistics.mean(tail))


def validation_records(run_dir, key):
    """Every validation of a run that logged ``key``, in step order; a
    step validated twice (a resumed run) counts once, the later record."""
    by_step = {}
    for timestamp in sorted(os.listdir(run_dir)):
        scalars = osp.join(run_dir, timestamp, 'vis_data', 'scalars.json')
        if not osp.isfile(scalars):
            continue
        with open(scalars) as f:
            for line in f:
                record = json.loads(line)
                if key in record:
                    by_step[record.get('step', len(by_step))] = record
    return [by_step[step] for step in sorted(by_step)]


def _pick(record, keys, where):
    missing = [key for key in keys if key not in record]
    if missing:
        raise KeyError(f'{where}: no {missing} among the metrics '
                       f'{sorted(record)}')
    return {key: float(record[key]) for key in keys}


def last_metrics(run_dir, keys):
    """The metrics of the run's last validation that logged ``keys[0]``,
    or ``None``."""
    records = validation_records(run_dir, keys[0])
    return _pick(records[-1], keys, run_dir) if records else None


def last_k_metrics(run_dir, keys, k):
    """``{key} median-last-{k}`` and ``{key} mean-last-{k}`` of every key,
    or ``None`` if the run logged no validation."""
    records = validation_records(run_dir, keys[0])
    if not records:
        return None
    row = {}
    for key in keys:
        stats = last_k_stats([_pick(r, [key], run_dir)[key]
                              for r in records], k)
        row[f'{key} median-last-{k}'] = stats['median']
        row[f'{key} mean-last-{k}'] = stats['mean']
    return row


def report_keys(args):
    """The columns of the results."""
    if args.last_k is None:
        return list(args.metrics)
    return [f'{key} {stat}-last-{args.last_k}' for key in args.metrics
            for stat in ('median', 'mean')]


# ------------------------------------------------------------ the selection
def check_selection(config, args):
    """Refuse to choose a checkpoint on the test set."""
    if args.select != 'best':
        return
    from mmengine.config import Config
    sys.path.insert(0, REPO)
    from mmlt.utils.launch import validates_on_test_set
    if validates_on_test_set(Config.fromfile(config)):
        raise ValueError(
            f'{config} validates on its test set: --select best would choose '
            'the checkpoint on the test set. Validate on a validation split '
            "(split='val' for Fashion-MNIST-LT / CIFAR-LT) or use --select "
            'last')


def chosen_checkpoint(run_dir, select):
    """The run's last checkpoint, or its best on validation."""
    if select == 'best':
        import glob
        found = sorted(glob.glob(osp.join(run_dir, 'best_*.pth')),
                       key=osp.getmtime)
        if not found:
            raise RuntimeError(f'{run_dir}: no best_*.pth; did the run '
                               'validate (train_cfg.val_interval)?')
        return found[-1]
    with open(osp.join(run_dir, 'last_checkpoint')) as f:
        return f.read().strip()


def result_file(run_dir, args):
    """Where a run's result is kept, by protocol (so that another protocol
    is not answered from the cache)."""
    if args.evaluate == 'test':
        return osp.join(run_dir, f'result_test-{args.select}.json')
    if args.last_k is not None:
        return osp.join(run_dir, f'result_val-last{args.last_k}.json')
    return osp.join(run_dir, 'result.json')


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
    """Train ``config`` with ``seed`` (resumed if interrupted) and evaluate
    it by the study's protocol; its row, or None if another process is
    training it."""
    run_dir = osp.join(args.work_dir, config_name(config), f'seed{seed}')
    result = result_file(run_dir, args)
    if osp.isfile(result):
        with open(result) as f:
            row = json.load(f)
        # refused if recorded without a metric asked for now
        _pick(row, report_keys(args), f'{result} (ask for metrics it has, '
              'or remove it to evaluate the run again)')
        return row
    os.makedirs(run_dir, exist_ok=True)
    if not _claim(run_dir):
        print(f'{config_name(config)} seed {seed}: trained by another '
              'process, left out of this summary', flush=True)
        return None
    try:
        start = time.time()
        if trains(config):
            _train(config, seed, args, run_dir)
        elif args.checkpoint is None:
            raise ValueError(f'{config} has no train_cfg (post hoc): give '
                             '--checkpoint to test, with --evaluate test')
        metrics = _evaluate(config, seed, args, run_dir)
        row = dict(config=config_name(config), seed=seed, **metrics,
                   minutes=round((time.time() - start) / 60, 2))
        with open(result, 'w') as f:
            json.dump(row, f, indent=1)
        return row
    finally:
        os.remove(osp.join(run_dir, 'running.pid'))


def trains(config):
    """Whether a config has a training loop (tau-norm configs have none)."""
    from mmengine.config import Config
    return Config.fromfile(config).get('train_cfg') is not None


def _call(command, args, run_dir, log_name, what):
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads),
               MKL_NUM_THREADS=str(args.threads))
    with open(osp.join(run_dir, log_name), 'a') as out:
        code = subprocess.call(command, env=env, stdout=out,
                               stderr=subprocess.STDOUT, cwd=REPO,
                               preexec_fn=_end_with_parent)
    if code != 0:
        raise RuntimeError(f'{what} failed (exit {code}); see '
                           f'{run_dir}/{log_name}')


def train_command(config, seed, args, run_dir):
    """``tools/train.py`` for one run: its seed, ``{seed}`` filled in, and
    MMEngine's best-checkpoint saving for ``--select best``."""
    command = [
        sys.executable, osp.join(REPO, 'tools', 'train.py'), config,
        '--work-dir', run_dir
    ]
    if osp.isfile(osp.join(run_dir, 'last_checkpoint')):
        command.append('--resume')
    train_args = with_seed(args.train_args, seed)
    options = [f'randomness.seed={seed}']
    if args.select == 'best':
        options += [f'default_hooks.checkpoint.save_best={args.select_metric}',
                    'default_hooks.checkpoint.rule=greater']
    if '--cfg-options' in train_args:
        at = train_args.index('--cfg-options') + 1
        train_args[at:at] = options
    else:
        train_args += ['--cfg-options'] + options
    return command + train_args


def _train(config, seed, args, run_dir):
    check_selection(config, args)
    _call(train_command(config, seed, args, run_dir), args, run_dir,
          'train.out', f'training {config} with seed {seed}')


def _evaluate(config, seed, args, run_dir):
    """The run's metrics by the study's protocol."""
    if args.evaluate == 'test':
        checkpoint = with_seed([args.checkpoint], seed)[0] \
            if args.checkpoint else chosen_checkpoint(run_dir, args.select)
        return _test_metrics(config, checkpoint, args, run_dir, 'test',
                             f'test_metrics_{args.select}.json')
    if args.last_k is not None:
        metrics = last_k_metrics(run_dir, args.metrics, args.last_k)
    else:
        metrics = last_metrics(run_dir, args.metrics)
    if metrics is None and args.last_k is None:
        metrics = revalidate_last_checkpoint(config, args, run_dir)
    if metrics is None:
        raise RuntimeError(
            f'{run_dir}: no validation logged {args.metrics[0]!r}; does the '
            'config validate at the end of training (train_cfg.val_interval)?')
    return metrics


def validates_at_the_end(cfg):
    """Whether the training loop of ``cfg`` validates after its last
    epoch (or iteration)."""
    train_cfg = cfg.get('train_cfg') or {}
    if cfg.get('val_dataloader') is None or cfg.get('val_evaluator') is None:
        return False
    interval = train_cfg.get('val_interval', 1)
    last = train_cfg.get('max_epochs', train_cfg.get('max_iters'))
    return bool(last) and last % interval == 0 and \
        train_cfg.get('val_begin', 1) <= last


def revalidate_last_checkpoint(config, args, run_dir):
    """The final validation of a run that was stopped during it: the
    checkpoint is saved before the validation, so a resumed run has nothing
    left to train and would never validate. Runs ``tools/test.py`` on the
    last checkpoint with the validation loader and evaluator of the run's
    own config (as trained, ``--cfg-options`` included); ``None`` if the
    config does not validate at the end."""
    from mmengine.config import Config
    trained = osp.join(run_dir, osp.basename(config))
    if not (osp.isfile(trained)
            and osp.isfile(osp.join(run_dir, 'last_checkpoint'))):
        return None
    cfg = Config.fromfile(trained)
    if not validates_at_the_end(cfg):
        return None
    cfg.test_dataloader = cfg.val_dataloader
    cfg.test_evaluator = cfg.val_evaluator
    cfg.test_cfg = cfg.get('val_cfg') or dict()
    revalidate = osp.join(run_dir, 'revalidate.py')
    cfg.dump(revalidate)
    checkpoint = chosen_checkpoint(run_dir, 'last')
    print(f'{run_dir}: its final validation is missing (stopped during it); '
          f'validating {osp.basename(checkpoint)}', flush=True)
    return _test_metrics(revalidate, checkpoint, args, run_dir, 'revalidate',
                         'revalidate_metrics.json')


def _test_metrics(config, checkpoint, args, run_dir, name, out_name):
    """``tools/test.py`` of ``checkpoint`` (work dir and log named
    ``name`` in ``run_dir``) and the study's metrics from its output."""
    out = osp.join(run_dir, out_name)
    _call([sys.executable, osp.join(REPO, 'tools', 'test.py'), config,
           checkpoint, '--work-dir', osp.join(run_dir, name), '--out', out,
           '--out-item', 'metrics'], args, run_dir, f'{name}.out',
          f'{name} of {checkpoint}')
    with open(out) as f:
        return _pick(json.load(f), args.metrics, out)


def summarise(rows, configs, names, keys):
    """Markdown table: per config, mean +- sample std (range) over the
    seeds."""
    header = '| config | seeds | ' + ' | '.join(keys) + ' |'
    lines = [header, '|' + ' --- |' * (len(keys) + 2)]
    for config, name in zip(configs, names):
        runs = [row for row in rows if row['config'] == config_name(config)]
        if not runs:
            continue
        cells = []
        for key in keys:
            values = [row[key] for row in runs]
            mean, std = mean_std(values)
            cells.append(f'{mean:.3f} +- {std:.3f} '
                         f'({min(values):.3f}-{max(values):.3f})')
        lines.append(f'| {name} | {len(runs)} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def main(argv=None):
    args = parse_args(argv)
    args.configs = [osp.abspath(config) for config in args.configs]
    os.makedirs(args.work_dir, exist_ok=True)
    args.work_dir = osp.abspath(args.work_dir)
    names = args.names or [config_name(config) for config in args.configs]
    keys = report_keys(args)
    # seed-major: every config gets its first seed before any gets a second
    jobs = [(config, seed) for seed in args.seeds for config in args.configs]

    failures = []

    def run(job):
        # one run's failure does not stop the others: reported at the end
        try:
            row = run_one(*job, args)
        except Exception as error:
            failures.append(f'{config_name(job[0])} seed {job[1]}: {error}')
            print(f'FAILED {failures[-1]}', flush=True)
            return None
        if row is None:
            return None
        print(f'{row["config"]} seed {row["seed"]}: ' + ', '.join(
            f'{key}={row[key]:.3f}' for key in keys), flush=True)
        return row

    with ThreadPoolExecutor(args.jobs) as pool:
        rows = [row for row in pool.map(run, jobs) if row is not None]
    with open(osp.join(args.work_dir, 'results.csv'), 'w', newline='') as f:
        writer = csv.DictWriter(
            f, fieldnames=['config', 'seed', *keys, 'minutes'],
            # a finished run keeps every metric it logged; the CSV has those
            # asked for
            extrasaction='ignore')
        writer.writeheader()
        writer.writerows(rows)
    table = summarise(rows, args.configs, names, keys)
    with open(osp.join(args.work_dir, 'summary.md'), 'w') as f:
        f.write(table + '\n')
    print(table)
    if failures:
        raise SystemExit(f'{len(failures)} run(s) failed (the others are in '
                         'the summary):\n' + '\n'.join(failures))


if __name__ == '__main__':
    main()
