"""Every shipped config trains under DDP: 2 gloo processes, one launch.

One ``torch.distributed.run`` job (``tests/ddp_matrix.py``) trains every
config of ``configs/`` for 2 iterations on small data in its dataset's real
format; each config is then one test item here. Per config: no error on
either rank, the iterations ran, parameters and the buffers that must be
global (everything outside BatchNorm: estimator sums, priors, queues,
prototypes, EMA weights) are bitwise equal on both ranks, and every class
prior the model holds equals the class distribution of the indices the
training sampler really drew on both ranks (DefaultSampler, repeat-factor
sampling, class-aware sampling under AspectRatioBatchSampler, mmlt's
samplers).
"""
import json
import os
import os.path as osp
import socket
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip('mmpretrain')
pytest.importorskip('mmdet')

import ddp_matrix  # noqa: E402

pytestmark = [pytest.mark.dist, pytest.mark.slow]

CASES = ddp_matrix.cases()
# The matrix's wall-clock budget on 2 cores (measured: see the README).
TIMEOUT = 1200


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.fixture(scope='module')
def records(tmp_path_factory):
    root = tmp_path_factory.mktemp('ddp_matrix')
    roots = ddp_matrix.write_data(str(root / 'data'))
    roots_file = root / 'roots.json'
    roots_file.write_text(json.dumps(roots))
    out = root / 'out'
    env = dict(os.environ, OMP_NUM_THREADS='1', MMLT_ALLOW_CPU='1')
    env['PYTHONPATH'] = os.pathsep.join(
        [ddp_matrix.REPO, ddp_matrix.HERE, env.get('PYTHONPATH', '')])
    only = os.environ.get('MMLT_DDP_MATRIX_ONLY')
    command = [
        sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node',
        '2', '--master_addr', '127.0.0.1', '--master_port',
        str(free_port()), osp.join(ddp_matrix.HERE, 'ddp_matrix.py'),
        '--roots', str(roots_file), '--out', str(out)
    ] + (['--only'] + only.split(',') if only else [])
    result = subprocess.run(command, env=env, capture_output=True, text=True,
                            timeout=TIMEOUT, cwd=ddp_matrix.REPO)
    log = result.stdout + result.stderr
    (root / 'log.txt').write_text(log)
    found = {}
    path = out / 'records.jsonl'
    if path.exists():
        for line in path.read_text().splitlines():
            record = json.loads(line)
            found[record['name']] = record
    assert found, f'the matrix wrote no record:\n{log[-6000:]}'
    found['__log__'] = log
    return found


def test_every_shipped_config_is_in_the_matrix_or_excluded_with_a_reason():
    names = {name for name, _, _ in CASES}
    for config in ddp_matrix.shipped_configs():
        assert config in names or ddp_matrix.EXCLUDED.get(config), config
    assert all(len(reason) > 20 for reason in ddp_matrix.EXCLUDED.values())


def _error_bound(expected, draws, clump):
    """5 standard deviations of a class's count among ``draws`` labels drawn
    in clumps of ``clump`` (a class-aware sampler's images per class draw),
    plus the padding a sampler may add to make the ranks' shares equal."""
    return 5 * np.sqrt(clump * draws * expected * (1 - expected)) + 4


@pytest.mark.parametrize('name', [name for name, _, _ in CASES])
def test_config_trains_under_ddp(records, name):
    if os.environ.get('MMLT_DDP_MATRIX_ONLY') and name not in records:
        pytest.skip('not selected by MMLT_DDP_MATRIX_ONLY')
    assert name in records, (
        f'{name}: no record; the job stopped before it\n' +
        records['__log__'][-4000:])
    record = records[name]
    errors = [e for e in record.get('errors', [record.get('error')]) if e]
    assert not errors, f'{name} failed:\n' + '\n'.join(errors)
    if record.get('post_hoc'):
        _check_post_hoc(record)
        return
    assert record['iters'] >= ddp_matrix.ITERS
    assert np.isfinite(record['loss']) and record['loss'] > 0
    assert record['num_params'] > 0
    assert record['param_mismatch'] == [], (
        'parameters differ between the ranks', record['param_mismatch'])
    assert record['buffer_mismatch'] == [], (
        'global buffers differ between the ranks', record['buffer_mismatch'])

    stream = record['stream']
    counts = {int(k): v for k, v in stream['counts'].items()}
    draws = sum(counts.values())
    for buffer, prior in record['priors'].items():
        prior = np.asarray(prior)
        observed = np.zeros(len(prior))
        for label, count in counts.items():
            observed[label] += count
        expected = prior * draws
        bound = _error_bound(prior, draws, stream.get('clump', 1))
        worst = np.argmax(np.abs(observed - expected) - bound)
        assert np.all(np.abs(observed - expected) <= bound), (
            f'{buffer}: the prior is not the sampled stream\'s '
            f'({stream["sampler"]}, {stream["epochs"]} epochs, {draws} '
            f'labels): class {worst} expected {expected[worst]:.1f}, drawn '
            f'{observed[worst]:.0f}; prior mode {record["prior_mode"]}')


def _check_post_hoc(record):
    """A tau-norm config: both ranks chose the same tau from the scores of
    the whole validation split (gathered by the metric), and it is the
    best-scoring one."""
    taus = record['taus']
    assert taus[0] == taus[1], ('the ranks chose different taus', taus)
    top1 = [score['lt/top1'] for score in record['scores']]
    assert len(top1) == 21 and all(np.isfinite(top1))
    best = min(round(0.1 * i, 1) for i, value in enumerate(top1)
               if value == max(top1))
    assert taus[0] == pytest.approx(best)
