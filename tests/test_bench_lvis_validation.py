"""``benchmarks/bench_lvis_validation.py``: its simulation of the per-class
thresholds of :class:`mmlt.PerClassTopKRoIHead` against the closed form and a
brute-force replay, and the whole script at a tiny scale."""
import importlib.util
import math
import os
import re
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, 'benchmarks', 'bench_lvis_validation.py')
NUMBER = r'[-+]?\d[\d,]*\.?\d*(?:e[-+]?\d+)?'


def load_bench():
    spec = importlib.util.spec_from_file_location('bench_lvis_validation',
                                                  SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def bench():
    return load_bench()


def test_iid_emission_matches_the_closed_form(bench):
    """A stream of n i.i.d. scores kept above the running K-th best emits
    K + sum_{i=K+1}^{n} K / i of them on average (images of m scores: the
    same with the threshold read once per image)."""
    rows = bench.closed_form_check(np.random.default_rng(0), 0.02)
    assert bench.expected_iid(50, 5000, 1) == pytest.approx(
        50 + sum(50 / i for i in range(51, 5001)))
    for row in rows:
        assert row['lower'] <= row['upper']
        assert row['lower'] * 0.97 <= row['exact'] <= row['upper'] * 1.03
        # the well-known approximation K (1 + ln(n / K)), within 4%
        assert row['approx'] == pytest.approx(row['exact'], rel=0.04)


def test_head_pass_replays_exactly(bench):
    """With a threshold update after every image (the first 50 of a pass),
    the emitted logits of each image are exactly those above the floor and
    above their class's K-th best of the earlier images' emitted logits,
    and at most K per class and image."""
    model = bench.ScoreModel(num_classes=12, proposals=40, obj_proposals=3,
                             pos_per_image=2)
    k, floor = 25, 1e-3
    upper, lower, head = bench.run_pass(model, 30, k, floor,
                                        np.random.default_rng(1), keep=True)
    assert (upper == lower).all()
    image, cls, x, _ = [np.concatenate(a) for a in zip(*head.kept)]
    assert (np.bincount(image, minlength=30) == upper).all()
    x_floor = math.log(floor / (1 - floor))
    for c in range(12):
        seen = []
        for j in range(30):
            mine = np.sort(x[(cls == c) & (image == j)])
            bar = x_floor if len(seen) < k else max(x_floor,
                                                    sorted(seen)[-k])
            assert (mine > bar).all() and len(mine) <= k
            seen.extend(mine.tolist())
        assert np.allclose(np.sort(head.best[c])[::-1][:min(k, len(seen))],
                           sorted(seen, reverse=True)[:k])


def figure(pattern, text):
    match = re.search(pattern, text, re.MULTILINE)
    assert match, (pattern, text[-4000:])
    return [float(g.replace(',', '')) for g in match.groups()]


@pytest.mark.slow
def test_script_at_a_tiny_scale():
    """The whole script: emission at least K per class and rank, gathered
    sizes and evaluate time positive, a timeout printed (about 30 s)."""
    pytest.importorskip('mmdet')
    pytest.importorskip('lvis')
    k, ranks = 2000, 2
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=REPO)
    out = subprocess.run(
        [sys.executable, SCRIPT, '--images', '200', '--ranks', str(ranks),
         '--k', str(k), '--class-stride', '32', '--scales', '2048', '1024',
         '--mask-pool', '64'],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, (out.stdout[-3000:], out.stderr[-5000:])
    text = out.stdout
    assert 'closed-form check: passed' in text
    low, up = figure(rf'^  per rank total\s+({NUMBER})M \.\. ({NUMBER})M',
                     text)
    assert 1203 * k / 1e6 <= low <= up
    first, _ = figure(rf'images 1-10\s+({NUMBER}) \.\.\s+({NUMBER})', text)
    last, _ = figure(rf'last 1%\s+({NUMBER}) \.\.\s+({NUMBER})', text)
    assert first > last > 0  # early images emit far more
    bbox, segm = figure(rf'bbox ({NUMBER}) GB, segm ({NUMBER}) GB', text)
    assert segm > bbox > 0  # masks add their RLEs
    rows = re.findall(rf'^  1/(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+({NUMBER})',
                      text, re.MULTILINE)
    assert [int(r[0]) for r in rows] == [2048, 1024]
    for _, images, kk, fed, _ in rows:
        assert int(fed) >= 1203 * int(kk)
    evaluate, = figure(rf'evaluate \(merge, standard, fixed, pool\)\s+'
                       rf'({NUMBER}) s', text)
    assert evaluate > 0
    timeout, = figure(rf'dist timeout .*\s({NUMBER}) h$', text)
    assert timeout >= 1
