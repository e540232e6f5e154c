"""tools/analysis_tools/seed_study.py: runs per (config, seed) in their own
processes, mean / std / range per config, finished and claimed runs left
alone."""
import csv
import json
import os
import os.path as osp
import statistics

import pytest

from test_train_resume import write_tiny_config

pytest.importorskip('mmpretrain')


def study(argv):
    from tools.analysis_tools.seed_study import main
    main(argv)


@pytest.mark.slow
def test_two_seeds_summary_and_resume(tmp_path, monkeypatch):
    # the training processes import the tests' hooks of the tiny config
    tests_dir = osp.dirname(osp.dirname(osp.abspath(__file__)))
    monkeypatch.setenv('PYTHONPATH', tests_dir + os.pathsep +
                       os.environ.get('PYTHONPATH', ''))
    cfg = write_tiny_config(
        tmp_path, base='la_fashionmnistlt.py',
        extra='train_cfg = dict(max_epochs=1, val_interval=1)\n')
    work = tmp_path / 'study'
    args = [cfg, '--seeds', '0', '1', '--work-dir', str(work), '--metrics',
            'lt/top1', 'lt/few', '--names', 'LA']
    study(args)
    rows = list(csv.DictReader(open(work / 'results.csv')))
    assert [int(r['seed']) for r in rows] == [0, 1]
    # each row is the last validation its run logged
    for row in rows:
        run = work / 'tiny' / f'seed{row["seed"]}'
        with open(run / 'result.json') as f:
            assert json.load(f)['lt/top1'] == float(row['lt/top1'])
    top1 = [float(r['lt/top1']) for r in rows]
    summary = (work / 'summary.md').read_text()
    assert summary.splitlines()[2].startswith('| LA | 2 | ')
    assert f'{statistics.mean(top1):.3f} +- {statistics.stdev(top1):.3f}' \
        in summary
    # a second call trains nothing: result.json is read back
    stamp = os.path.getmtime(work / 'tiny' / 'seed0' / 'result.json')
    study(args)
    assert os.path.getmtime(work / 'tiny' / 'seed0' / 'result.json') == stamp

    # a run stopped during its final validation (checkpoint saved, nothing
    # logged): resuming trains nothing, so its last checkpoint is validated
    # again, with the run's own config, to the same numbers
    run0 = work / 'tiny' / 'seed0'
    os.remove(run0 / 'result.json')
    for scalars in run0.glob('*/vis_data/scalars.json'):
        kept = [line for line in scalars.read_text().splitlines()
                if 'lt/top1' not in line]
        scalars.write_text(''.join(line + '\n' for line in kept))
    study(args[:3] + args[4:])
    with open(run0 / 'result.json') as f:
        assert json.load(f)['lt/top1'] == top1[0]
    assert osp.isfile(run0 / 'revalidate_metrics.json')

    # a run claimed by a live process (here: this one) is left to it
    claimed = work / 'tiny' / 'seed2'
    claimed.mkdir()
    (claimed / 'running.pid').write_text(str(os.getpid()))
    study([cfg, '--seeds', '2', '--work-dir', str(work), '--metrics',
           'lt/top1'])
    assert not osp.exists(claimed / 'result.json')


def test_bad_arguments(tmp_path):
    with pytest.raises(SystemExit):
        study(['missing.py', '--work-dir', str(tmp_path), '--metrics', 'x'])
    cfg = tmp_path / 'c.py'
    cfg.write_text('')
    with pytest.raises(SystemExit):
        study([str(cfg), str(cfg), '--names', 'one', '--work-dir',
               str(tmp_path), '--metrics', 'x'])


@pytest.mark.skipif(not osp.isdir('/proc'), reason='Linux only')
def test_training_process_ends_with_its_study(tmp_path):
    """A killed study takes its training run with it, so no other study
    finds the run unclaimed while it is still being trained."""
    import subprocess
    import sys
    import time
    tools = osp.join(osp.dirname(osp.dirname(osp.dirname(
        osp.abspath(__file__)))), 'tools', 'analysis_tools')
    study_process = subprocess.Popen([
        sys.executable, '-c',
        'import subprocess, sys, time\n'
        f'sys.path.insert(0, {tools!r})\n'
        'from seed_study import _end_with_parent\n'
        'p = subprocess.Popen([sys.executable, "-c", "import time; '
        'time.sleep(120)"], preexec_fn=_end_with_parent)\n'
        'print(p.pid, flush=True)\n'
        'time.sleep(120)\n'
    ], stdout=subprocess.PIPE, text=True)
    child = int(study_process.stdout.readline())
    study_process.kill()
    study_process.wait()

    def ended():
        try:
            with open(f'/proc/{child}/status') as f:
                return 'State:\tZ' in f.read()  # dead, not yet reaped
        except FileNotFoundError:
            return True

    deadline = time.time() + 10
    while not ended() and time.time() < deadline:
        time.sleep(0.1)
    assert ended()


def test_a_failed_run_leaves_the_others_in_the_summary(tmp_path,
                                                       monkeypatch):
    from tools.analysis_tools import seed_study
    good, bad = tmp_path / 'good.py', tmp_path / 'bad.py'
    for cfg in (good, bad):
        cfg.write_text('')

    def fake_run_one(config, seed, args):
        if config.endswith('bad.py'):
            raise RuntimeError('no validation logged')
        return dict(config='good', seed=seed, **{'lt/top1': 80.0 + seed},
                    minutes=0.1)

    monkeypatch.setattr(seed_study, 'run_one', fake_run_one)
    failed = r'(?s)1 run\(s\) failed.*bad seed 0: no validation logged'
    with pytest.raises(SystemExit, match=failed):
        study([str(bad), str(good), '--seeds', '0', '--jobs', '2',
               '--work-dir', str(tmp_path / 'study'), '--metrics', 'lt/top1'])
    rows = list(csv.DictReader(open(tmp_path / 'study' / 'results.csv')))
    assert [(r['config'], r['lt/top1']) for r in rows] == [('good', '80.0')]
    assert '| good | 1 | 80.000' in (tmp_path / 'study' /
                                     'summary.md').read_text()


def test_finished_runs_are_summarised_on_a_subset_of_their_metrics(
        tmp_path):
    """A run recorded with more metrics than a later study asks for is
    summarised on those asked for; one recorded without them is refused."""
    config = tmp_path / 'det.py'
    config.write_text('')
    for seed, ap in ((0, 0.5), (1, 0.7)):
        run_dir = tmp_path / 'study' / 'det' / f'seed{seed}'
        run_dir.mkdir(parents=True)
        (run_dir / 'result.json').write_text(json.dumps(
            {'config': 'det', 'seed': seed, 'lvis/bbox_AP': ap,
             'lvis/segm_AP': 0.1, 'minutes': 30.0}))
    argv = [str(config), '--seeds', '0', '1', '--work-dir',
            str(tmp_path / 'study'), '--metrics']
    study(argv + ['lvis/bbox_AP'])
    rows = list(csv.DictReader(open(tmp_path / 'study' / 'results.csv')))
    assert [list(r) for r in rows] == [['config', 'seed', 'lvis/bbox_AP',
                                        'minutes']] * 2
    assert [r['lvis/bbox_AP'] for r in rows] == ['0.5', '0.7']
    # mean 0.6, sample std 0.1414
    assert '| det | 2 | 0.600 +- 0.141' in (tmp_path / 'study' /
                                            'summary.md').read_text()
    refused = r"no \['lvis/AP50'\] among the metrics"
    with pytest.raises(SystemExit, match=refused):
        study(argv + ['lvis/bbox_AP', 'lvis/AP50'])


# ------------------------------------------------------ the protocol's numbers
def test_which_configs_validate_at_the_end():
    from mmengine.config import Config

    from tools.analysis_tools.seed_study import validates_at_the_end
    loaders = dict(val_dataloader=dict(), val_evaluator=dict())

    def cfg(**train_cfg):
        return Config(dict(train_cfg=train_cfg, **loaders))

    assert validates_at_the_end(cfg(max_epochs=20, val_interval=5))
    assert validates_at_the_end(cfg(max_iters=1000, val_interval=500))
    assert validates_at_the_end(cfg(max_epochs=3))
    assert not validates_at_the_end(cfg(max_epochs=20, val_interval=3))
    assert not validates_at_the_end(cfg(max_epochs=2, val_begin=5))
    assert not validates_at_the_end(Config(dict(train_cfg=dict(
        max_epochs=2), val_dataloader=None, val_evaluator=None)))


def test_mean_and_sample_std_by_hand():
    from tools.analysis_tools.seed_study import mean_std
    # mean 3; squared deviations 4 + 1 + 0 + 9 = 14 over n - 1 = 3
    mean, std = mean_std([1, 2, 3, 6])
    assert mean == 3.0 and std == pytest.approx((14 / 3)**0.5)
    assert mean_std([83.5]) == (83.5, 0.0)


def test_median_and_mean_of_the_last_k_by_hand():
    from tools.analysis_tools.seed_study import last_k_stats
    # last 3 of 5: 9, 3, 7 -> median 7, mean 19 / 3
    stats = last_k_stats([5, 1, 9, 3, 7], 3)
    assert stats['median'] == 7.0
    assert stats['mean'] == pytest.approx(19 / 3)
    # an even k: the mean of the two middle values
    assert last_k_stats([5, 1, 9, 3, 7], 4)['median'] == 5.0
    with pytest.raises(ValueError, match='fewer than --last-k 6'):
        last_k_stats([5, 1, 9, 3, 7], 6)


def _write_scalars(run_dir, stamp, records):
    path = run_dir / stamp / 'vis_data'
    path.mkdir(parents=True)
    with open(path / 'scalars.json', 'w') as f:
        for record in records:
            f.write(json.dumps(record) + '\n')


def test_last_k_of_a_resumed_run(tmp_path):
    """Validations are read in step order across the run's timestamps; a
    step validated again after a resume counts once (the later record)."""
    from tools.analysis_tools.seed_study import (last_k_metrics,
                                                 last_metrics,
                                                 validation_records)
    _write_scalars(tmp_path, '20260101_000000', [
        {'lr': 0.1, 'step': 1},
        {'lt/top1': 50.0, 'lt/few': 10.0, 'step': 1},
        {'lt/top1': 60.0, 'lt/few': 20.0, 'step': 2},
        {'lt/top1': 61.0, 'lt/few': 21.0, 'step': 3},  # lost, redone
    ])
    _write_scalars(tmp_path, '20260102_000000', [
        {'lt/top1': 62.0, 'lt/few': 22.0, 'step': 3},
        {'lt/top1': 70.0, 'lt/few': 40.0, 'step': 4},
    ])
    records = validation_records(str(tmp_path), 'lt/top1')
    assert [r['lt/top1'] for r in records] == [50.0, 60.0, 62.0, 70.0]
    assert last_metrics(str(tmp_path), ['lt/top1']) == {'lt/top1': 70.0}
    # last 3: 60, 62, 70 (median 62, mean 64); few: 20, 22, 40
    row = last_k_metrics(str(tmp_path), ['lt/top1', 'lt/few'], 3)
    assert row == {'lt/top1 median-last-3': 62.0,
                   'lt/top1 mean-last-3': pytest.approx(64.0),
                   'lt/few median-last-3': 22.0,
                   'lt/few mean-last-3': pytest.approx(82 / 3)}


def test_summary_table_by_hand():
    from tools.analysis_tools.seed_study import summarise
    rows = [dict(config='a', seed=s, top1=v) for s, v in
            enumerate([80.0, 82.0, 84.0])]
    table = summarise(rows, ['x/a.py'], ['CE'], ['top1'])
    # mean 82, sample std 2
    assert table.splitlines()[2] == \
        '| CE | 3 | 82.000 +- 2.000 (80.000-84.000) |'


def test_train_command_fills_in_the_seed(tmp_path):
    from tools.analysis_tools.seed_study import parse_args, train_command
    cfg = tmp_path / 'c.py'
    cfg.write_text('')
    args = parse_args([
        str(cfg), '--work-dir', str(tmp_path), '--metrics', 'lt/top1',
        '--evaluate', 'test', '--select', 'best', '--train-args',
        '--cfg-options', 'model.backbone.init_cfg.checkpoint=w/seed{seed}.pth'
    ])
    command = train_command(str(cfg), 2, args, str(tmp_path / 'run'))
    options = command[command.index('--cfg-options') + 1:]
    assert options == [
        'randomness.seed=2', 'default_hooks.checkpoint.save_best=lt/top1',
        'default_hooks.checkpoint.rule=greater',
        'model.backbone.init_cfg.checkpoint=w/seed2.pth'
    ]


@pytest.mark.parametrize('extra, message', [
    (['--select', 'best'], '--evaluate test'),
    (['--last-k', '20', '--evaluate', 'test'], '--last-k'),
    (['--checkpoint', 'x.pth'], '--evaluate test'),
])
def test_protocols_without_a_definition_are_refused(tmp_path, capsys, extra,
                                                     message):
    cfg = tmp_path / 'c.py'
    cfg.write_text('')
    with pytest.raises(SystemExit):
        study([str(cfg), '--work-dir', str(tmp_path), '--metrics', 'x',
               *extra])
    assert message in capsys.readouterr().err


def test_best_checkpoint_is_never_chosen_on_the_test_set():
    from tools.analysis_tools.seed_study import check_selection, parse_args
    configs = osp.join(osp.dirname(osp.dirname(osp.dirname(
        osp.abspath(__file__)))), 'configs')
    # the CE demo validates on the test set; the decoupled configs do not
    args = parse_args([osp.join(configs, 'ce_fashionmnistlt.py'),
                       '--work-dir', 'w', '--metrics', 'lt/top1',
                       '--evaluate', 'test', '--select', 'best'])
    with pytest.raises(ValueError, match='validates on its test set'):
        check_selection(args.configs[0], args)
    check_selection(osp.join(configs, 'decoupled', 'crt_fashionmnistlt.py'),
                    args)
