"""One rank's bad batch ends every rank promptly: the rank with an
out-of-range label fails inside its step (no value checks on the host), and
torchrun (tools/dist_train.sh) stops the rank that waits in the next
collective instead of leaving it blocked until the process group's timeout
(30 minutes by default)."""
import os.path as osp
import time

import pytest

from test_dist_train import run_dist_train
from test_train_resume import write_tiny_config

pytest.importorskip('mmpretrain')


def test_bad_batch_on_one_rank_ends_both_promptly(tmp_path, port):
    cfg = write_tiny_config(
        tmp_path,
        extra="custom_hooks = [dict(type='mmlt.ClassCountsHook'), "
        "dict(type='mmlt.VMFWindowHook'), "
        "dict(type='BadLabelOnRank', rank=1, at_iter=2)]\n"
        "train_cfg = dict(max_epochs=2, val_interval=2)\n")
    start = time.time()
    out = run_dist_train(cfg, tmp_path / 'work', port)
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
