"""`tools/dist_train.sh CONFIG 2` runs to the end on the CPU (gloo), and both
ranks end with identical weights and identical ProCo estimator state."""
import math
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch

from test_train_resume import REPO, write_tiny_config

pytest.importorskip('mmpretrain')


def run_dist_train(cfg, work_dir, port):
    """``tools/dist_train.sh CONFIG 2`` on the CPU (gloo), tests' hooks
    importable; the finished process."""
    env = dict(os.environ)
    tests_dir = osp.dirname(osp.dirname(osp.abspath(__file__)))
    env.update(
        PYTHON=sys.executable,
        PORT=str(port),
        MASTER_ADDR='127.0.0.1',
        OMP_NUM_THREADS='1',
        PYTHONPATH=os.pathsep.join([tests_dir, REPO,
                                    env.get('PYTHONPATH', '')]))
    return subprocess.run(
        ['bash', osp.join(REPO, 'tools', 'dist_train.sh'), cfg, '2',
         '--work-dir', str(work_dir)],
        env=env, capture_output=True, text=True, timeout=600)



def test_dist_train_two_processes(tmp_path, port):
    cfg = write_tiny_config(
        tmp_path,
        extra="custom_hooks = [dict(type='mmlt.ClassCountsHook'), "
        "dict(type='mmlt.VMFWindowHook'), dict(type='DumpRankState')]\n"
        "train_cfg = dict(max_epochs=2, val_interval=2)\n")
    work_dir = tmp_path / 'work'
    out = run_dist_train(cfg, work_dir, port)
    assert out.returncode == 0, (out.stdout[-3000:], out.stderr[-5000:])
    # channels-last batches with channels-last parameters under DDP
    # (mmlt.ChannelsLastDistributedDataParallel): no gradient copies
    assert 'Grad strides do not match' not in out.stdout + out.stderr
    rank0 = torch.load(work_dir / 'rank0.pth')
    rank1 = torch.load(work_dir / 'rank1.pth')
    assert set(rank0) == set(rank1)
    # BatchNorm running statistics are rank-local (no SyncBN on the CPU, and
    # mmengine's DDP does not broadcast buffers); everything else -- weights,
    # the class prior and the vMF estimator -- must be identical.
    bn_stats = ('running_mean', 'running_var', 'num_batches_tracked')
    compared = [k for k in rank0 if not k.endswith(bn_stats)]
    assert any('estimator' in k for k in compared)
    for key in compared:
        assert torch.equal(rank0[key], rank1[key]), key

    # the estimator pooled both ranks' features: 2 contrastive views of each
    # of the 2 * ceil(N / 2) samples that DefaultSampler gives per epoch
    from mmlt.datasets import FashionMNISTLT
    n_train = len(
        FashionMNISTLT(
            data_root=str(tmp_path / 'fmnist'), n_max=24, imb_factor=4))
    per_epoch = 2 * 2 * math.ceil(n_train / 2)
    est = 'head.contrast_branch.loss.estimator.'
    assert rank0[est + 'current_counts'].sum().item() == per_epoch
    assert rank0[est + 'previous_counts'].sum().item() == per_epoch
    # validation ran on the balanced test split at the end
    assert 'lt/top1' in out.stdout + out.stderr
