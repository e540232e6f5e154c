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
