"""What a preempted user does: tools/train.py is SIGKILLed inside an epoch,
then continued with --resume. Every tensor of the final checkpoint (weights,
BN buffers, the ProCo estimator, optimizer, schedulers) must equal that of a
run that never stopped, bit for bit -- with 0 workers, with a persistent
worker, from a mid-epoch checkpoint, and on 2 gloo processes."""
import os
import os.path as osp
import re
import signal
import subprocess
import sys

import pytest
import torch

from test_train_resume import REPO, write_tiny_config

pytest.importorskip('mmpretrain')

TESTS = osp.dirname(osp.dirname(osp.abspath(__file__)))


def env_for(port=None):
    env = dict(os.environ)
    env.update(
        OMP_NUM_THREADS='1',
        PYTHONPATH=os.pathsep.join([TESTS, REPO, env.get('PYTHONPATH', '')]))
    if port is not None:
        env.update(PYTHON=sys.executable, PORT=str(port),
                   MASTER_ADDR='127.0.0.1')
    return env


def train_command(cfg, work_dir, nproc=1, resume=False):
    extra = ['--work-dir', str(work_dir)] + (['--resume'] if resume else [])
    if nproc == 1:
        return [sys.executable, osp.join(REPO, 'tools', 'train.py'), cfg
                ] + extra
    return ['bash', osp.join(REPO, 'tools', 'dist_train.sh'), cfg,
            str(nproc)] + extra


def run_to_end(cfg, work_dir, port=None, nproc=1, resume=False):
    out = subprocess.run(
        train_command(cfg, work_dir, nproc, resume),
        env=env_for(port), capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, (out.stdout[-3000:], out.stderr[-4000:])
    return out.stdout + out.stderr


def run_and_kill(cfg, work_dir, checkpoint, kill_after, port=None, nproc=1):
    """Start training; SIGKILL every process once ``checkpoint`` exists and a
    log line matches ``kill_after`` (an iteration after that checkpoint)."""
    process = subprocess.Popen(
        train_command(cfg, work_dir, nproc),
        env=env_for(port), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True)
    log = []
    try:
        for line in process.stdout:
            log.append(line)
            if re.search(kill_after, line) and osp.exists(
                    osp.join(work_dir, checkpoint)):
                os.killpg(process.pid, signal.SIGKILL)
                break
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == -signal.SIGKILL or nproc > 1, ''.join(
        log[-40:])
    assert not osp.exists(osp.join(work_dir, 'epoch_3.pth'))
    return ''.join(log)


def checkpoint_tensors(path):
    checkpoint = torch.load(path, map_location='cpu', weights_only=False)
    tensors = {f'state_dict.{k}': v for k, v in
               checkpoint['state_dict'].items()}
    for key, value in checkpoint['optimizer']['state'].items():
        for name, tensor in value.items():
            tensors[f'optimizer.{key}.{name}'] = tensor
    return tensors, checkpoint['param_schedulers'], checkpoint['meta']


def assert_same_final_checkpoint(a_dir, b_dir):
    a, a_sched, a_meta = checkpoint_tensors(osp.join(a_dir, 'epoch_3.pth'))
    b, b_sched, b_meta = checkpoint_tensors(osp.join(b_dir, 'epoch_3.pth'))
    assert a.keys() == b.keys()
    assert any('estimator' in k for k in a)
    assert any('running_var' in k for k in a)
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f'{len(different)} of {len(a)} differ: ' \
        f'{different[:8]}'
    assert a_sched == b_sched
    assert (a_meta['epoch'], a_meta['iter']) == (b_meta['epoch'],
                                                 b_meta['iter'])


LOADER = ("train_dataloader = dict(batch_size=8, num_workers={}, "
          "persistent_workers={}, dataset=dict(data_root=data_root, **lt))\n")
MODES = {
    'workers0': LOADER.format(0, False),
    'persistent1': LOADER.format(1, True),
}


@pytest.mark.slow
@pytest.mark.parametrize('mode', sorted(MODES))
def test_sigkill_inside_epoch_then_resume_is_bitwise_exact(tmp_path, mode):
    cfg = write_tiny_config(tmp_path, extra=MODES[mode])
    run_to_end(cfg, tmp_path / 'a')
    run_and_kill(cfg, tmp_path / 'b', 'epoch_2.pth',
                 r'Epoch\(train\) \[3\]\[\s*2/')
    resumed = run_to_end(cfg, tmp_path / 'b', resume=True)
    assert 'resumed epoch: 2' in resumed
    assert_same_final_checkpoint(tmp_path / 'a', tmp_path / 'b')


@pytest.mark.slow
def test_sigkill_after_mid_epoch_checkpoint_resumes_at_its_iteration(
        tmp_path):
    # 16 iterations per epoch here; a checkpoint every 4 iterations:
    # iter_36.pth falls inside epoch 3 (iterations 33..48); the kill comes
    # one iteration later, and the resumed run redoes 1 iteration, not 5.
    extra = MODES['workers0'] + (
        "default_hooks = dict(logger=dict(interval=1), checkpoint=dict("
        "by_epoch=False, interval=4, max_keep_ckpts=10, save_last=True))\n")
    cfg = write_tiny_config(tmp_path, extra=extra)
    log_a = run_to_end(cfg, tmp_path / 'a')
    per_epoch = int(re.search(r'Epoch\(train\) \[1\]\[\s*\d+/(\d+)\]',
                              log_a).group(1))
    checkpoint = 2 * per_epoch + 4 - (2 * per_epoch) % 4
    assert 2 * per_epoch < checkpoint < 3 * per_epoch - 1, per_epoch
    run_and_kill(cfg, tmp_path / 'b', f'iter_{checkpoint}.pth',
                 rf'Epoch\(train\) \[3\]\[\s*{checkpoint - 2 * per_epoch + 1}/')
    resumed = run_to_end(cfg, tmp_path / 'b', resume=True)
    assert f'skipping its first {checkpoint - 2 * per_epoch} iterations' \
        in resumed
    last = f'iter_{3 * per_epoch}.pth'
    for work_dir in ('a', 'b'):
        os.replace(tmp_path / work_dir / last,
                   tmp_path / work_dir / 'epoch_3.pth')
    assert_same_final_checkpoint(tmp_path / 'a', tmp_path / 'b')


@pytest.mark.slow
def test_two_processes_killed_and_resumed_are_bitwise_exact(tmp_path, port):
    cfg = write_tiny_config(tmp_path, extra=MODES['workers0'])
    run_to_end(cfg, tmp_path / 'a', port=port, nproc=2)
    run_and_kill(cfg, tmp_path / 'b', 'epoch_2.pth',
                 r'Epoch\(train\) \[3\]\[\s*2/', port=port + 1, nproc=2)
    run_to_end(cfg, tmp_path / 'b', port=port + 2, nproc=2, resume=True)
    assert_same_final_checkpoint(tmp_path / 'a', tmp_path / 'b')
