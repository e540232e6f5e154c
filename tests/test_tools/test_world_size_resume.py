"""A checkpoint written by N processes resumes on M (ExactResumeHook).

tools/train.py on 2 gloo processes stops inside an epoch and resumes on 1
process, and the other way. The resumed part of the epoch trains exactly
the entries of the epoch's sample order that the interrupted part had not
(DefaultSampler's padding for 2 processes aside), the resumed run starts
from the checkpoint's weights, optimizer, estimator and counters, logs the
world-size warning, and ends at the end of its last epoch with its final
checkpoint. The unit tests check the skipping arithmetic for other world
sizes and the format of the CUDA generator states.

The data: 99 training images (odd, so 2 processes pad the order to 100),
8 per batch and process: 7 iterations per epoch on 2 processes, 13 on 1.
"""
import json
import os
import os.path as osp
import subprocess
import sys
from collections import Counter
from types import SimpleNamespace

import pytest
import torch

from test_train_resume import REPO, write_tiny_config

pytest.importorskip('mmpretrain')

TESTS = osp.dirname(osp.dirname(osp.abspath(__file__)))
NUM_TRAIN, BATCH = 99, 8

CONFIG = '''
lt = dict(n_max=19, imb_factor=4)  # {num_train} training images
train_dataloader = dict(
    batch_size={batch}, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, **lt))
val_dataloader = val_cfg = val_evaluator = None
test_dataloader = test_cfg = test_evaluator = None
train_cfg = dict(by_epoch=True, max_epochs={max_epochs})
default_hooks = dict(
    logger=dict(interval=1),
    checkpoint=dict(by_epoch=False, interval={interval}, max_keep_ckpts=3,
                    save_last=True))
custom_hooks = [
    dict(type='mmlt.ClassCountsHook'), dict(type='mmlt.VMFWindowHook'),
    dict(type='mmlt.ExactResumeHook'), dict(type='mmlt.CheckpointCheckHook'),
    dict(type='RecordTrainedSamples'),
'''


def write_configs(tmp_path, max_epochs, checkpoint_iter):
    """Two configs: one that crashes one iteration after the checkpoint at
    ``checkpoint_iter``, and the same without the crash (to resume)."""
    extra = CONFIG.format(num_train=NUM_TRAIN, batch=BATCH,
                          max_epochs=max_epochs, interval=checkpoint_iter)
    crash = write_tiny_config(
        tmp_path, extra=extra +
        f"    dict(type='CrashAfterIter', iteration={checkpoint_iter + 1})]\n")
    os.replace(crash, tmp_path / 'crash.py')
    return str(tmp_path / 'crash.py'), write_tiny_config(
        tmp_path, extra=extra + ']\n')


def train(cfg, work_dir, nproc, port, resume=None):
    """tools/train.py (1 process) or tools/dist_train.sh (gloo), on the
    CPU; the finished process, its output in ``.log``."""
    env = dict(os.environ)
    env.update(
        OMP_NUM_THREADS='1',
        CUDA_VISIBLE_DEVICES='',
        MMLT_ALLOW_CPU='1',  # CPU on purpose, also on a GPU node
        PYTHONPATH=os.pathsep.join([TESTS, REPO, env.get('PYTHONPATH', '')]))
    extra = ['--work-dir', str(work_dir)]
    if resume is not None:
        extra += ['--resume', str(resume)]
    if nproc == 1:
        command = [sys.executable, osp.join(REPO, 'tools', 'train.py'), cfg]
    else:
        env.update(PYTHON=sys.executable, PORT=str(port),
                   MASTER_ADDR='127.0.0.1')
        command = ['bash', osp.join(REPO, 'tools', 'dist_train.sh'), cfg,
                   str(nproc)]
    out = subprocess.run(command + extra, env=env, capture_output=True,
                         text=True, timeout=300)
    out.log = out.stdout + out.stderr
    return out


def epoch_stream(work_dir, world_size, epoch, before_iter=None):
    """The entries of the epoch's order that ``world_size`` processes
    trained, in the order's positions: rank r's j-th index is entry
    ``r + world_size * j``. Also the samplers' seeds."""
    per_rank, seeds = [], set()
    for rank in range(world_size):
        path = osp.join(work_dir, f'samples_rank{rank}.jsonl')
        with open(path) as f:
            records = [json.loads(line) for line in f]
        mine = []
        for record in records:
            if (record['world_size'] == world_size
                    and record['epoch'] == epoch and
                (before_iter is None or record['iter'] < before_iter)):
                assert record['rank'] == rank
                mine += record['samples']
                seeds.add(record['seed'])
        per_rank.append(mine)
    assert len({len(mine) for mine in per_rank}) == 1, per_rank
    stream = [mine[j] for j in range(len(per_rank[0])) for mine in per_rank]
    return stream, seeds


def epoch_order(seed, epoch, world_size):
    """DefaultSampler's order of an epoch, padded for ``world_size``."""
    generator = torch.Generator()
    generator.manual_seed(seed + epoch)
    order = torch.randperm(NUM_TRAIN, generator=generator).tolist()
    padded = -(-NUM_TRAIN // world_size) * world_size
    return (order * 2)[:padded]


def assert_nested_equal(a, b, where=''):
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_nested_equal(a[key], b[key], f'{where}.{key}')
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_nested_equal(x, y, f'{where}[{i}]')
    else:
        assert a == b, where


def assert_starts_from(checkpoint, work_dir, world_size, max_iters):
    """Every rank of the resumed run starts from the checkpoint: loading
    reset nothing (weights, BN and estimator buffers, optimizer state,
    counters)."""
    assert any('estimator' in k for k in checkpoint['state_dict'])
    for rank in range(world_size):
        start = torch.load(osp.join(work_dir, f'start_rank{rank}.pth'),
                           weights_only=False)
        assert (start['epoch'], start['iter']) == (
            checkpoint['meta']['epoch'], checkpoint['meta']['iter'])
        assert start['max_iters'] == max_iters
        assert_nested_equal(start['state_dict'], checkpoint['state_dict'],
                            'state_dict')
        assert_nested_equal(start['optimizer'], checkpoint['optimizer'],
                            'optimizer')


def assert_final_checkpoint(path, world_size, epoch, trained):
    """The resumed run's last checkpoint: written at its last iteration,
    which ends the epoch's order (``trained`` entries), and the estimator
    of the epoch counted each trained entry's two views once."""
    checkpoint = torch.load(path, weights_only=False)
    assert checkpoint['exact_resume'] == dict(
        world_size=world_size, batch_size=BATCH, epoch=epoch,
        epoch_samples=trained, epoch_complete=True)
    counts = checkpoint['state_dict'][
        'head.contrast_branch.loss.estimator.current_counts']
    assert counts.sum().item() == 2 * trained


WARNING = 'ExactResumeHook: resuming a checkpoint of {} processes on {}'


def crash_then_resume(tmp_path, port, saved_world, world, max_epochs,
                      checkpoint_iter, epoch, epoch_samples):
    """Train on ``saved_world`` processes until the crash after
    ``checkpoint_iter``, check what that checkpoint records, resume it on
    ``world`` processes; returns (checkpoint, log, first dir, resumed dir)."""
    crash, cfg = write_configs(tmp_path, max_epochs=max_epochs,
                               checkpoint_iter=checkpoint_iter)
    first, resumed = tmp_path / 'first', tmp_path / 'resumed'
    out = train(crash, first, saved_world, port)
    assert out.returncode != 0 and 'simulated crash' in out.log, \
        out.log[-3000:]
    checkpoint_path = first / f'iter_{checkpoint_iter}.pth'
    checkpoint = torch.load(checkpoint_path, weights_only=False)
    assert checkpoint['exact_resume'] == dict(
        world_size=saved_world, batch_size=BATCH, epoch=epoch,
        epoch_samples=epoch_samples, epoch_complete=False)

    out = train(cfg, resumed, world, port + 1, resume=checkpoint_path)
    assert out.returncode == 0, out.log[-4000:]
    assert WARNING.format(saved_world, world) in out.log
    return checkpoint, out.log, first, resumed


@pytest.mark.slow
def test_two_processes_resume_on_one(tmp_path, port):
    # 2 processes: 7 iterations per epoch; iter_10.pth is 3 iterations into
    # epoch 2, so 3 * 8 * 2 = 48 entries of its order were trained.
    checkpoint, log, first, resumed = crash_then_resume(
        tmp_path, port, saved_world=2, world=1, max_epochs=2,
        checkpoint_iter=10, epoch=1, epoch_samples=48)
    # 1 process: the other 51 entries are 7 iterations, so the run ends at
    # iteration 17 (not 2 * 13): its last checkpoint is written there.
    assert 'this run ends at iteration 17, not 26' in log
    assert_starts_from(checkpoint, resumed, 1, max_iters=17)
    assert_final_checkpoint(resumed / 'iter_17.pth', 1, 1, NUM_TRAIN)

    before, seeds = epoch_stream(first, 2, epoch=1, before_iter=10)
    after, seeds_after = epoch_stream(resumed, 1, epoch=1)
    assert len(seeds | seeds_after) == 1
    order = epoch_order(seeds.pop(), 1, world_size=1)
    assert len(before) == 48 and before == order[:48]
    assert after == order[48:]  # nothing repeated, nothing skipped
    assert sorted(before + after) == list(range(NUM_TRAIN))


@pytest.mark.slow
def test_one_process_resumes_on_two(tmp_path, port):
    # 1 process: iter_5.pth is 5 iterations (40 entries) into epoch 1;
    # 2 processes skip 20 indices each, and train the other 60 in 4
    # iterations (30 per process, with DefaultSampler's padding entry).
    checkpoint, log, first, resumed = crash_then_resume(
        tmp_path, port, saved_world=1, world=2, max_epochs=1,
        checkpoint_iter=5, epoch=0, epoch_samples=40)
    assert 'this run ends at iteration 9, not 7' in log
    assert_starts_from(checkpoint, resumed, 2, max_iters=9)
    assert_final_checkpoint(resumed / 'iter_9.pth', 2, 0, NUM_TRAIN + 1)

    before, seeds = epoch_stream(first, 1, epoch=0, before_iter=5)
    after, seeds_after = epoch_stream(resumed, 2, epoch=0)
    assert len(seeds | seeds_after) == 1
    order = epoch_order(seeds.pop(), 0, world_size=2)
    assert before == order[:40] and after == order[40:]
    # every image once, and the order's first once more: the entry that
    # pads the order of 99 to 2 * 50 (as in any 2-process epoch)
    repeated = Counter(before + after) - Counter(range(NUM_TRAIN))
    assert repeated == Counter([order[0]])


# -- the skipping arithmetic, in one process -----------------------------
class _Logger:

    def __init__(self):
        self.lines = []

    def info(self, text):
        self.lines.append(text)

    warning = info


def _fake_runner(sampler=None):
    loader = SimpleNamespace(
        batch_sampler=torch.utils.data.BatchSampler(sampler, 1, False))
    return SimpleNamespace(logger=_Logger(), train_dataloader=loader)


@pytest.mark.parametrize('num', [99, 100])
@pytest.mark.parametrize('saved_world, world', [(2, 1), (1, 2), (2, 3),
                                                (3, 2), (4, 4)])
def test_each_rank_skips_its_share_of_the_trained_entries(
        monkeypatch, num, saved_world, world):
    """``saved_world`` ranks trained ``it`` iterations of ``batch`` each;
    ``world`` ranks of a ResumableSampler that skip what the hook says train
    the rest of the order: nothing skipped, and repeated only the entries
    that ``world`` ranks cannot split evenly (the hook warns) and the
    sampler's own padding."""
    from mmlt.datasets import ResumableSampler
    from mmlt.engine.hooks import exact_resume_hook as module
    monkeypatch.setattr(module, 'get_world_size', lambda: world)
    hook = module.ExactResumeHook()
    dataset = list(range(num))

    def samplers(world_size):
        result = []
        for rank in range(world_size):
            sampler = ResumableSampler(dataset, shuffle=True, seed=3)
            sampler.rank, sampler.world_size = rank, world_size
            sampler.num_samples = -(-num // world_size)
            sampler.total_size = sampler.num_samples * world_size
            sampler.set_epoch(2)
            result.append(sampler)
        return result

    order = list(samplers(1)[0])
    batch = 4
    per_rank = len(samplers(saved_world)[0])
    for it in range(-(-per_rank // batch) + 1):
        done_per_rank = min(it * batch, per_rank)
        done = done_per_rank * saved_world
        complete = done_per_rank == per_rank
        new = samplers(world)
        runner = _fake_runner(new[0])
        skip = hook._per_rank_skip(runner, done, complete)
        rest = []
        for sampler in new:
            sampler.skip_first(skip)
            rest.append(list(sampler))
        trained = [order[p] if p < num else order[p - num]
                   for p in range(min(done, num))]
        count = Counter(trained + [i for shard in rest for i in shard])
        assert set(count) == set(range(num)), (it, skip)
        if complete:
            assert not any(rest)
            continue
        repeats = sum(count.values()) - num
        padding = (-num) % world
        uneven = done - skip * world
        assert repeats == uneven + padding, (it, skip)
        assert any('cannot split evenly' in line
                   for line in runner.logger.lines) == bool(uneven)


# -- CUDA generator states -----------------------------------------------
class _FakeCuda:
    """torch.cuda's generator functions for ``devices`` devices, of which
    ``current`` is this process's."""

    def __init__(self, devices, current):
        self.states = [torch.tensor([d], dtype=torch.uint8)
                       for d in range(devices)]
        self.current = current
        self.set_calls = []

    def install(self, monkeypatch):
        cuda = torch.cuda
        monkeypatch.setattr(cuda, 'is_available', lambda: True)
        monkeypatch.setattr(cuda, 'current_device', lambda: self.current)
        monkeypatch.setattr(cuda, 'get_rng_state',
                            lambda device='cuda': self.states[self.current])
        monkeypatch.setattr(cuda, 'set_rng_state', self.set_rng_state)

        def no_all(*args, **kwargs):
            raise AssertionError('every device\'s state touched')

        monkeypatch.setattr(cuda, 'get_rng_state_all', no_all)
        monkeypatch.setattr(cuda, 'set_rng_state_all', no_all)

    def set_rng_state(self, state, device='cuda'):
        self.set_calls.append(state.clone())
        self.states[self.current] = state.clone()


def test_random_states_keep_the_current_devices_cuda_state(monkeypatch):
    from mmlt.engine.hooks.exact_resume_hook import (random_states,
                                                     set_random_states)
    cuda = _FakeCuda(devices=4, current=2)
    cuda.install(monkeypatch)
    states = random_states()
    assert torch.equal(states['cuda'], torch.tensor([2], dtype=torch.uint8))

    # a process with one visible device restores it (another world size or
    # CUDA_VISIBLE_DEVICES than the saving process's)
    one = _FakeCuda(devices=1, current=0)
    one.install(monkeypatch)
    set_random_states(states)
    assert len(one.set_calls) == 1 and torch.equal(one.states[0],
                                                   states['cuda'])


def test_random_states_of_old_checkpoints_load(monkeypatch):
    """Checkpoints before one CUDA state per process hold a list of every
    visible device's: the current device's entry is restored, and none
    when the list is shorter."""
    from mmlt.engine.hooks.exact_resume_hook import (random_states,
                                                     set_random_states)
    old = random_states()  # CPU here: no 'cuda' entry
    old['cuda'] = [torch.tensor([10 + d], dtype=torch.uint8)
                   for d in range(2)]
    cuda = _FakeCuda(devices=2, current=1)
    cuda.install(monkeypatch)
    set_random_states(old)
    assert len(cuda.set_calls) == 1
    assert torch.equal(cuda.states[1], torch.tensor([11], dtype=torch.uint8))

    cuda = _FakeCuda(devices=4, current=3)  # more devices than were saved
    cuda.install(monkeypatch)
    set_random_states(old)
    assert cuda.set_calls == []

    # the CPU generators are restored whatever the CUDA entry
    import random
    random.random()
    set_random_states(old)
    assert random.getstate() == old['python']
