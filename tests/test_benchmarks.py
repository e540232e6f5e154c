"""Every benchmark in ``benchmarks/`` runs to the end over all its variants at
tiny sizes and prints finite, self-consistent figures.

The three scripts run as concurrent subprocesses (one thread each) started
by a module fixture, so the file costs about as long as the slowest one (the
four Mask R-CNN models of ``bench_det_branch.py``).
"""
import itertools
import math
import os
import re
import subprocess
import sys
import types

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCHMARKS = os.path.join(REPO, 'benchmarks')

pytest.importorskip('mmpretrain')
pytest.importorskip('mmdet')

NUMBER = r'[-+]?(?:\d+\.?\d*(?:e[-+]?\d+)?|nan|inf)'
RUNS = {
    'cls': [
        'bench_cls_branch.py', '--batch', '2', '--size', '32', '--reps', '1',
        '--warmup', '1', '--threads', '1', '--target', '1.5'
    ],
    'det': [
        'bench_det_branch.py', '--variants', 'proco', 'bcl', 'supcon',
        '--reps', '1', '--warmup', '0', '--batch', '1', '--size', '64',
        '--gts', '2', '--threads', '1', '--branch-reps', '2'
    ],
    'proco': [
        'bench_proco_loss.py', '--configs', '4,1000,16', '--repeats', '2',
        '--threads', '1'
    ],
}


@pytest.fixture(scope='module')
def outputs():
    """{benchmark: finished process}, all started at once."""
    env = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')
    procs = {
        name:
        subprocess.Popen(
            [sys.executable, os.path.join(BENCHMARKS, argv[0])] + argv[1:],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True)
        for name, argv in RUNS.items()
    }
    finished = {}
    try:
        for name, proc in procs.items():
            stdout, stderr = proc.communicate(timeout=400)
            finished[name] = types.SimpleNamespace(returncode=proc.returncode,
                                                   stdout=stdout,
                                                   stderr=stderr)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return finished


def succeeded(outputs, name):
    """The stdout of a benchmark that exited with 0."""
    out = outputs[name]
    assert out.returncode == 0, (out.stdout[-3000:], out.stderr[-5000:])
    return out.stdout


def finite_numbers(pattern, text):
    """The groups of the one match of ``pattern`` in ``text``, as floats,
    all finite."""
    matches = re.findall(pattern, text, flags=re.MULTILINE)
    assert len(matches) == 1, (pattern, text[-3000:])
    groups = matches[0] if isinstance(matches[0], tuple) else (matches[0], )
    values = [float(g) for g in groups]
    assert all(math.isfinite(v) for v in values), (pattern, values)
    return values


def positive_numbers(pattern, text):
    values = finite_numbers(pattern, text)
    assert all(v > 0 for v in values), (pattern, values)
    return values


def agrees(printed, decimals, fn, *operands):
    """Whether ``printed`` (rounded to ``decimals``) can be ``fn`` of the
    printed ``operands``, each a ``(value, decimals)`` pair.

    ``fn`` must be monotonic in each operand: its range over the operands'
    rounding box is spanned by the box's corners.
    """

    def value(args):
        try:
            return fn(*args)
        except ZeroDivisionError:
            return math.inf

    corners = itertools.product(*[(v - 0.5 * 10**-d, v + 0.5 * 10**-d)
                                  for v, d in operands])
    results = [value(c) for c in corners]
    half = 0.5 * 10**-decimals + 1e-12
    return min(results) - half <= printed <= max(results) + half


def ratio(a, b):
    return a / b


def one_plus_ms_over_s(ms, seconds):
    return 1 + ms / 1e3 / seconds


@pytest.mark.slow
def test_cls_branch_benchmark(outputs):
    text = succeeded(outputs, 'cls')
    step = {
        name:
        positive_numbers(rf'^  {name}\s+({NUMBER}) s \(({NUMBER}) s\)$', text)
        for name in ('ce', 'proco', 'bcl')
    }
    head = {
        name: positive_numbers(rf'^  {name}\s+({NUMBER}) ms$', text)[0]
        for name in ('ce', 'proco', 'bcl')
    }
    positive_numbers(rf'VMF window swap .*: ({NUMBER}) ms$', text)
    for name in ('ce', 'proco', 'bcl'):
        products = re.search(rf'^  {name}: (.+)$', text, re.MULTILINE)
        assert products and 'float32' in products.group(1), name
    for name in ('proco', 'bcl'):
        paired, of_medians, from_head, extra = finite_numbers(
            rf'^  {name}\s+step ratio ({NUMBER}) \(paired median; \w+ the '
            rf'target\), ({NUMBER}) \(ratio of medians\); head-only '
            rf'estimate ({NUMBER}) \(\+?({NUMBER}) ms per step', text)
        assert paired > 0 and of_medians > 0 and from_head > 0
        # One repetition: the paired median is the ratio of the medians,
        # which is the ratio of the printed step times.
        assert paired == of_medians
        assert agrees(of_medians, 3, ratio, (step[name][0], 3),
                      (step['ce'][0], 3))
        assert agrees(extra, 1, lambda a, b: a - b, (head[name], 2),
                      (head['ce'], 2))
        assert agrees(from_head, 4, one_plus_ms_over_s, (extra, 1),
                      (step['ce'][0], 3))
        verdict = re.search(
            rf'^  {name}\s+step ratio \S+ \(paired median; '
            r'(\w+) the target', text, re.MULTILINE).group(1)
        assert verdict == ('meets' if paired <= 1.5 else 'misses')


@pytest.mark.slow
def test_det_branch_benchmark(outputs):
    text = succeeded(outputs, 'det')
    none_step, = positive_numbers(
        rf'^none \(no branch\): median step ({NUMBER}) s$', text)
    for name in ('proco', 'bcl', 'supcon'):
        (median, paired, of_medians, foreground, branch, from_branch,
         branch_max, from_branch_max) = positive_numbers(
             rf'^{name}: median step ({NUMBER}) s; step ratio {name}/none = '
             rf'({NUMBER}) \(paired median\), ({NUMBER}) \(ratio of '
             rf'medians\); ({NUMBER}) foreground RoIs per step; branch alone '
             rf'({NUMBER}) ms -> ({NUMBER}), with 256 RoIs ({NUMBER}) ms -> '
             rf'({NUMBER})$', text)
        assert paired == of_medians  # one repetition
        assert agrees(of_medians, 3, ratio, (median, 3), (none_step, 3))
        # The two ground-truth boxes are proposals too: IoU 1, foreground.
        assert foreground >= 2
        assert agrees(from_branch, 3, one_plus_ms_over_s, (branch, 1),
                      (none_step, 3))
        assert agrees(from_branch_max, 3, one_plus_ms_over_s, (branch_max, 1),
                      (none_step, 3))


@pytest.mark.slow
def test_proco_loss_benchmark(outputs):
    text = succeeded(outputs, 'proco')
    matmul, loss, update, literal = positive_numbers(
        rf'^done \(4, 1000, 16\): matmul ({NUMBER}) ms, loss ({NUMBER}) ms, '
        rf'update ({NUMBER}) ms, literal loss ({NUMBER}) s$', text)
    row = rf'^ +\(4, 1000, 16\) \| ' + r' \| '.join([
        rf' *({NUMBER})', rf' *({NUMBER}) +({NUMBER})',
        rf' *({NUMBER}) +({NUMBER})', rf' *({NUMBER}) +({NUMBER})',
        rf' *({NUMBER}) +({NUMBER})x', rf' *({NUMBER}) +({NUMBER})x',
        rf' *({NUMBER})$'
    ])
    (t_matmul, t_loss, loss_x, t_views, views_x, t_update, update_x, t_literal,
     literal_x, t_lit_update, lit_update_x,
     rel_diff) = finite_numbers(row, text)
    assert [t_matmul, t_loss, t_update] == [matmul, loss, update]
    assert t_literal == pytest.approx(literal * 1e3, rel=0.01, abs=0.1)
    times_and_ratios = [
        t_views, loss_x, views_x, update_x, literal_x, t_lit_update,
        lit_update_x
    ]
    assert all(v > 0 for v in times_and_ratios), times_and_ratios
    assert agrees(loss_x, 2, ratio, (loss, 2), (matmul, 2))
    assert agrees(views_x, 2, ratio, (t_views, 2), (matmul, 2))
    assert agrees(update_x, 2, ratio, (update, 2), (matmul, 2))
    assert agrees(literal_x, 2, ratio, (t_literal, 1), (loss, 2))
    # The literal implementation computes the same loss.
    assert 0 <= rel_diff < 1e-2
    # Peak RSS increases (n/a where /proc/self/clear_refs is not writable)
    # and the estimator state (1000 x 16 statistics: about 1 MiB or less).
    memory = re.search(
        r'^ +\(4, 1000, 16\) \| ' + r' \| '.join([r' *(\S+)'] * 7) + '$', text,
        re.MULTILINE)
    assert memory, text[-2000:]
    for value in memory.groups()[:-1]:
        assert value == 'n/a' or value.isdigit(), memory.group(0)
    assert memory.group(7) in ('0', '1'), memory.group(0)
    checks = re.search(r'^ +\(4, 1000, 16\): (.+)$', text, re.MULTILINE)
    assert checks, text[-2000:]
    assert re.fullmatch(
        r'loss <= 1\.0x (met|MISSED), update <= 0\.5x '
        r'(met|MISSED)', checks.group(1))
    # The aten ops of one loss call, counted; p = 16 takes the float64 path.
    kernels = re.search(
        r'aten ops of one loss call \(forward \+ backward\): (\d+), of them '
        r'(\d+) writing a B x C tensor \((\d+) in float64\)', text)
    assert kernels, text[-2000:]
    total, batch_by_class, float64 = map(int, kernels.groups())
    assert total > batch_by_class >= float64 > 0


def test_cls_head_inputs_on_requested_device(monkeypatch):
    """``--device cuda`` puts the head timing's labels on the device: the
    head sees features and labels on the benchmark's device ('meta' here,
    which needs no GPU), never labels left on the CPU."""
    sys.path.insert(0, BENCHMARKS)
    try:
        import bench_cls_branch
    finally:
        sys.path.remove(BENCHMARKS)
    feats, samples = bench_cls_branch.head_inputs(3, 1000, 'meta')
    assert feats.device.type == 'meta' and feats.shape == (9, 2048)
    assert [s.gt_label.device.type for s in samples] == ['meta'] * 3

    seen = []

    class Head:
        num_classes = 1000

        def loss(self, feats, samples):
            x, = feats
            seen.append(
                (x.device.type, {s.gt_label.device.type
                                 for s in samples}))
            return dict(loss=x.sum())

    model = types.SimpleNamespace(head=Head(), zero_grad=lambda **kw: None)
    variant = types.SimpleNamespace(name='proco', model=model)
    monkeypatch.setattr(bench_cls_branch, 'DEVICE', 'meta')
    times = bench_cls_branch.time_heads([variant], batch_size=2, reps=1)
    assert len(times['proco']) == 1
    assert seen and all(dev == ('meta', {'meta'}) for dev in seen), seen
