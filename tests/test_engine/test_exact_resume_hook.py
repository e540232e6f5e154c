"""ExactResumeHook on real MMEngine Runners: a run that crashes and resumes
ends bit-identical to a run that never stopped.

The toy pipeline draws from all three generators (Python, NumPy, torch) and
the model has dropout, so any random state that a restart changes shows up
in the weights. A crash is an exception raised by a hook inside an epoch,
after the checkpoint the resume starts from; the subprocess SIGKILL version
with tools/train.py is in tests/test_tools/test_kill_resume.py.
"""
import pickle
import random

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.runner import Runner

from mmlt.datasets import ResumableSampler, SeededDataset
from mmlt.engine.hooks.exact_resume_hook import ExactResumeHook
from mmlt.utils.seeding import derived_seed

NUM_SAMPLES, BATCH = 24, 4  # 6 iterations per epoch


class NoisyDataset(torch.utils.data.Dataset):
    """Items with augmentation noise from Python, NumPy and torch."""

    def __len__(self):
        return NUM_SAMPLES

    def __getitem__(self, idx):
        x = torch.full((3, ), float(idx))
        x = x + float(np.random.rand()) + random.random() + torch.rand(3)
        return dict(inputs=x, labels=torch.tensor(idx % 2))


class DropoutModel(BaseModel):

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(3, 8), nn.Dropout(0.5),
                                 nn.Linear(8, 2))

    def forward(self, inputs, labels, mode='tensor'):
        logits = self.net(torch.stack(inputs) if isinstance(inputs, list)
                          else inputs)
        if mode == 'loss':
            labels = torch.stack(labels) if isinstance(labels,
                                                       list) else labels
            return dict(loss=nn.functional.cross_entropy(logits, labels))
        return logits


class Crash(Hook):
    """Stands in for SIGKILL: stop inside an epoch."""

    def __init__(self, at_iter):
        self.at_iter = at_iter

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if runner.iter == self.at_iter:
            raise KeyboardInterrupt('crash')


def make_runner(work_dir, num_workers=0, persistent=False, by_epoch=True,
                resume=False, crash_at=None, max_epochs=3,
                iteration_based=False, save_begin=0, extra_hooks=(),
                seeded=True, sampler='mmlt.ResumableSampler'):
    """A toy run; ``by_epoch`` is the checkpoints', ``iteration_based`` the
    loop's (8 iterations over an InfiniteSampler); ``seeded`` wraps the
    dataset in mmlt.SeededDataset."""
    hooks = [dict(type='mmlt.ExactResumeHook'), *extra_hooks]
    if crash_at is not None:
        hooks.append(Crash(crash_at))
    checkpoint = dict(type='CheckpointHook', interval=1) if by_epoch else \
        dict(type='CheckpointHook', interval=4, by_epoch=False,
             save_begin=save_begin)
    torch.manual_seed(0)  # the same initial weights in every run
    return Runner(
        model=DropoutModel(),
        work_dir=str(work_dir),
        train_dataloader=dict(
            dataset=SeededDataset(NoisyDataset()) if seeded else
            NoisyDataset(),
            sampler=dict(
                type='InfiniteSampler' if iteration_based else sampler,
                shuffle=True),
            batch_size=BATCH,
            num_workers=num_workers,
            persistent_workers=persistent,
            collate_fn=dict(type='default_collate')),
        optim_wrapper=dict(
            optimizer=dict(type='SGD', lr=0.01, momentum=0.9)),
        train_cfg=dict(by_epoch=False, max_iters=8) if iteration_based else
        dict(by_epoch=True, max_epochs=max_epochs),
        default_hooks=dict(checkpoint=checkpoint,
                           logger=dict(type='LoggerHook', interval=1)),
        custom_hooks=hooks,
        randomness=dict(seed=7),
        resume=resume,
        default_scope='mmlt')


def final_state(runner):
    state = {f'model.{k}': v.clone() for k, v in
             runner.model.state_dict().items()}
    for key, value in runner.optim_wrapper.state_dict()['state'].items():
        for name, tensor in value.items():
            state[f'optim.{key}.{name}'] = tensor.clone()
    return state


def run_straight(work_dir, **kwargs):
    runner = make_runner(work_dir, **kwargs)
    runner.train()
    return final_state(runner)


def run_crash_and_resume(work_dir, crash_at, **kwargs):
    with pytest.raises(KeyboardInterrupt):
        make_runner(work_dir, crash_at=crash_at, **kwargs).train()
    runner = make_runner(work_dir, resume=True, **kwargs)
    runner.train()
    return final_state(runner), runner


def assert_bitwise_equal(a, b):
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, different


@pytest.mark.slow
@pytest.mark.parametrize('num_workers, persistent', [(0, False), (1, True),
                                                     (2, False)])
def test_resume_after_crash_is_bitwise_exact(tmp_path, num_workers,
                                             persistent):
    straight = run_straight(tmp_path / 'a', num_workers=num_workers,
                            persistent=persistent)
    # epoch_2.pth is written after iteration 12; crash at iteration 15.
    resumed, _ = run_crash_and_resume(tmp_path / 'b', 15,
                                      num_workers=num_workers,
                                      persistent=persistent)
    assert_bitwise_equal(straight, resumed)


@pytest.mark.slow
def test_mid_epoch_checkpoint_resumes_at_its_iteration(tmp_path):
    straight = run_straight(tmp_path / 'a', by_epoch=False)
    # iter_8.pth is written inside epoch 2 (iterations 6..11); crash at 10.
    resumed, runner = run_crash_and_resume(tmp_path / 'b', 10,
                                           by_epoch=False)
    assert runner.iter == 18
    assert_bitwise_equal(straight, resumed)


def test_without_the_hook_resume_differs(tmp_path):
    """The failure the hook fixes, shown on the same toy run."""

    def runner_without_hook(work_dir, resume=False, crash_at=None):
        runner = make_runner(work_dir, resume=resume, crash_at=crash_at)
        runner._hooks = [h for h in runner._hooks
                         if not isinstance(h, ExactResumeHook)]
        return runner

    straight = runner_without_hook(tmp_path / 'a')
    straight.train()
    with pytest.raises(KeyboardInterrupt):
        runner_without_hook(tmp_path / 'b', crash_at=15).train()
    resumed = runner_without_hook(tmp_path / 'b', resume=True)
    resumed.train()
    a, b = final_state(straight), final_state(resumed)
    assert any(not torch.equal(a[k], b[k]) for k in a)


def test_checkpoint_carries_random_states(tmp_path):
    runner = make_runner(tmp_path, max_epochs=1)
    runner.train()
    checkpoint = torch.load(tmp_path / 'epoch_1.pth', weights_only=False)
    states = checkpoint['random_states']
    assert len(states) == 1 and set(states[0]) >= {'python', 'numpy', 'torch'}
    size = len(pickle.dumps(states))
    assert size < 16000, size  # about 12 KB per rank


def test_sample_seed_depends_on_seed_epoch_and_index_only():
    dataset = SeededDataset(NoisyDataset())
    unseeded = dataset[5]['inputs']
    key = torch.tensor([7, 2])
    dataset.set_item_seed_key(key)
    first = dataset[5]['inputs']
    torch.rand(10), np.random.rand(), random.random()  # other draws between
    assert torch.equal(dataset[5]['inputs'], first)
    assert not torch.equal(dataset[5]['inputs'], unseeded)
    assert not torch.equal(dataset[6]['inputs'], first)
    key[1] = 3  # next epoch: new augmentation
    assert not torch.equal(dataset[5]['inputs'], first)
    # pickles with its key (workers started with 'spawn')
    key[1] = 2
    copy = pickle.loads(pickle.dumps(dataset))
    assert type(copy) is SeededDataset and len(copy) == NUM_SAMPLES
    assert torch.equal(copy[5]['inputs'], first)
    assert derived_seed(1, 7, 3, 5) != derived_seed(1, 7, 5, 3)


def test_iteration_based_loop_keeps_step_seeds_only(tmp_path):
    """An endless data iterator has no epoch at which to change the sample
    key: the hook leaves the dataset alone and still seeds the steps."""
    runner = make_runner(tmp_path, by_epoch=False, iteration_based=True)
    runner.train()
    assert runner.iter == 8
    assert runner.train_dataloader.dataset._item_seed_key is None
    checkpoint = torch.load(tmp_path / 'iter_8.pth', weights_only=False)
    assert len(checkpoint['random_states']) == 1


class RecordTorchState(Hook):
    """Runs after ExactResumeHook, before CheckpointHook: the generator
    state at the moment a checkpoint is saved."""

    priority = 'HIGH'

    def __init__(self):
        self.states = {}

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        self.states[runner.iter + 1] = torch.get_rng_state().clone()


def test_states_are_gathered_at_checkpoints_with_save_begin(tmp_path):
    """CheckpointHook(interval=4, save_begin=1) saves after iterations 5, 9,
    13, 17, none of them an epoch end (every 6): the checkpoint holds the
    states of its own iteration, not of an earlier one."""
    recorder = RecordTorchState()
    runner = make_runner(tmp_path, by_epoch=False, save_begin=1,
                         extra_hooks=[recorder])
    runner.train()
    for step in (5, 9, 13, 17):
        checkpoint = torch.load(tmp_path / f'iter_{step}.pth',
                                weights_only=False)
        assert torch.equal(checkpoint['random_states'][0]['torch'],
                           recorder.states[step]), step
    assert not torch.equal(recorder.states[5], recorder.states[4])


@pytest.mark.slow
def test_mid_epoch_resume_with_save_begin_is_exact_and_swaps_nothing(
        tmp_path):
    straight = run_straight(tmp_path / 'a', by_epoch=False, save_begin=1)
    # iter_9.pth is written inside epoch 2 (iterations 6..11); crash at 10.
    resumed, runner = run_crash_and_resume(tmp_path / 'b', 10,
                                           by_epoch=False, save_begin=1)
    assert_bitwise_equal(straight, resumed)
    loader = runner.train_dataloader
    assert type(loader.dataset) is SeededDataset
    assert type(loader.batch_sampler.sampler) is ResumableSampler
    assert loader.batch_sampler.sampler.num_skipped == 0  # reset after
    assert len(loader) == NUM_SAMPLES // BATCH


def test_undeclared_dataset_and_sampler_are_named_with_the_fix(
        tmp_path, monkeypatch):
    """A plain dataset and MMEngine's DefaultSampler: the run trains, and the
    warnings say what to put in the config."""
    kwargs = dict(by_epoch=False, seeded=False, sampler='DefaultSampler')
    with pytest.raises(KeyboardInterrupt):
        make_runner(tmp_path, crash_at=10, **kwargs).train()
    runner = make_runner(tmp_path, resume=True, **kwargs)
    warnings = []
    monkeypatch.setattr(runner.logger, 'warning', warnings.append)
    runner.train()
    text = '\n'.join(warnings)
    assert "type='mmlt.SeededDataset'" in text
    assert "type='mmlt.ResumableSampler'" in text
    assert runner.iter == 18 + 2  # iterations 8, 9 of epoch 2 run twice
