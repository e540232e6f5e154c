"""One rank's bad batch ends every rank promptly: the rank with an
out-of-range label fails inside its step (no value checks on the host), and
torchrun (tools/dist_train.sh) stops the rank that waits in the next
collective instead of leaving it blocked until the process group's timeout
(30 minutes by default)."""
import os
import os.path as osp
import subprocess
import sys
import time

import pytest

from test_train_resume import REPO, write_tiny_config

pytest.importorskip('mmpretrain')


def test_bad_batch_on_one_rank_ends_both_promptly(tmp_path, port):
    cfg = write_tiny_config(
        tmp_path,
        extra="custom_hooks = [dict(type='mmlt.ClassCountsHook'), "
        "dict(type='mmlt.VMFWindowHook'), "
        "dict(type='BadLabelOnRank', rank=1, at_iter=2)]\n"
        "train_cfg = dict(max_epochs=2, val_interval=2)\n")
    env = dict(os.environ)
    tests_dir = osp.dirname(osp.dirname(osp.abspath(__file__)))
    env.update(
        PYTHON=sys.executable, PORT=str(port), MASTER_ADDR='127.0.0.1',
        OMP_NUM_THREADS='1',
        PYTHONPATH=os.pathsep.join([tests_dir, REPO,
                                    env.get('PYTHONPATH', '')]))
    start = time.time()
    out = subprocess.run(
        ['bash', osp.join(REPO, 'tools', 'dist_train.sh'), cfg, '2',
         '--work-dir', str(tmp_path / 'work')],
        env=env, capture_output=True, text=True, timeout=600)
    elapsed = time.time() - start
    log = out.stdout + out.stderr
    assert out.returncode != 0
    # the failing rank's own message reaches the user ...
    assert 'out of bounds' in log, log[-3000:]
    # ... and the waiting rank did not sit out the collective's timeout
    # (start-up of two processes included; a hang would take 30 minutes)
    assert elapsed < 120, elapsed
    # iteration 2 never finished on either rank: no later checkpoint
    assert not osp.exists(tmp_path / 'work' / 'epoch_1.pth')
