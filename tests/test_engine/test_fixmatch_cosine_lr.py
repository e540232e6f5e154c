"""mmlt.FixMatchCosineLR: lr(k) = lr0 cos(7 pi k / (16 K)) at every
iteration, by iterations and by epochs, and across a resume."""
import math

import pytest
import torch
import torch.nn as nn
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.registry import PARAM_SCHEDULERS
from mmengine.runner import Runner
from torch.utils.data import Dataset

from mmlt.engine.schedulers import (FixMatchCosineLR,
                                    FixMatchCosineParamScheduler)

LR0 = 0.03


def closed_form(k, K, fraction=7 / 16):
    return LR0 * math.cos(fraction * math.pi * min(k, K) / K)


def sgd(groups=1):
    params = [nn.Parameter(torch.zeros(2)) for _ in range(groups)]
    return torch.optim.SGD([{'params': [p]} for p in params], lr=LR0,
                           momentum=0.9)


def run(optimizer, scheduler, steps):
    lrs = []
    for _ in range(steps):
        lrs.append([g['lr'] for g in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    return lrs


def test_hand_values_at_0_half_and_end():
    K = 16
    optimizer = sgd()
    # end = K + 1 so that step K itself is scheduled and can be read
    scheduler = FixMatchCosineLR(optimizer, T_max=K, end=K + 1,
                                 by_epoch=False)
    lrs = [lr[0] for lr in run(optimizer, scheduler, K + 3)]
    assert lrs[0] == pytest.approx(0.03, rel=1e-12)
    # cos(7 pi / 32) and cos(7 pi / 16)
    assert lrs[K // 2] == pytest.approx(0.03 * 0.773010453362737, rel=1e-12)
    assert lrs[K] == pytest.approx(0.03 * 0.195090322016128, rel=1e-12)
    assert lrs[K + 1] == lrs[K + 2] == lrs[K]  # past the end: unchanged
    for k, lr in enumerate(lrs[:K + 1]):
        assert lr == pytest.approx(closed_form(k, K), rel=1e-12), k


@pytest.mark.parametrize('fraction', [0.25, 0.5])
def test_the_fraction_and_a_decay_to_zero(fraction):
    K = 10
    optimizer = sgd(groups=2)
    scheduler = FixMatchCosineLR(optimizer, fraction=fraction, T_max=K,
                                 by_epoch=False)
    lrs = run(optimizer, scheduler, K + 4)
    for k, pair in enumerate(lrs):
        assert pair[0] == pair[1]
        assert pair[0] == pytest.approx(
            closed_form(k, K, fraction), rel=1e-12, abs=1e-15), k
    if fraction == 0.5:
        assert lrs[-1][0] == pytest.approx(0, abs=1e-15)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match='fraction'):
        FixMatchCosineLR(sgd(), fraction=0.6, end=10)
    with pytest.raises(ValueError, match='T_max'):
        FixMatchCosineLR(sgd())  # no end, no T_max
    with pytest.raises(ValueError, match='by_epoch'):
        FixMatchCosineLR.build_iter_from_epoch(sgd(), by_epoch=False,
                                               end=2, epoch_length=3)


def test_epochs_convert_to_iterations_through_the_registry():
    optimizer = sgd()
    scheduler = PARAM_SCHEDULERS.build(
        dict(type='mmlt.FixMatchCosineLR', by_epoch=True,
             convert_to_iter_based=True, end=4),
        default_args=dict(optimizer=optimizer, epoch_length=5))
    assert isinstance(scheduler, FixMatchCosineLR)
    assert not scheduler.by_epoch and scheduler.T_max == 20
    assert scheduler.fraction == 7 / 16
    for k, lr in enumerate(run(optimizer, scheduler, 20)):
        assert lr[0] == pytest.approx(closed_form(k, 20), rel=1e-12)
    # any parameter, not only the learning rate
    optimizer = sgd()
    momentum = FixMatchCosineParamScheduler(optimizer, 'momentum', T_max=4,
                                            by_epoch=False)
    values = []
    for _ in range(5):
        values.append(optimizer.param_groups[0]['momentum'])
        optimizer.step()
        momentum.step()
    assert values[4] == pytest.approx(0.9 * math.cos(7 * math.pi / 16))


def test_state_dict_resumes_the_schedule():
    K = 12
    optimizer = sgd()
    scheduler = FixMatchCosineLR(optimizer, T_max=K, by_epoch=False)
    first = run(optimizer, scheduler, 5)
    saved = (optimizer.state_dict(), scheduler.state_dict())
    rest = run(optimizer, scheduler, K - 5)
    # a fresh optimizer and scheduler, loaded as the Runner does on resume
    optimizer2 = sgd()
    optimizer2.load_state_dict(saved[0])
    scheduler2 = FixMatchCosineLR(optimizer2, T_max=3, by_epoch=False)
    scheduler2.load_state_dict(saved[1])
    assert scheduler2.T_max == K and scheduler2.last_step == 5
    assert run(optimizer2, scheduler2, K - 5) == rest
    for k, lr in enumerate(first + rest):
        assert lr[0] == pytest.approx(closed_form(k, K), rel=1e-12)


class _Data(Dataset):

    def __len__(self):
        return 12

    def __getitem__(self, idx):
        return dict(inputs=torch.full((2, ), float(idx)))


class _Model(BaseModel):

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(2, 1)

    def forward(self, inputs, mode='tensor'):
        out = self.fc(inputs)
        return dict(loss=out.pow(2).mean()) if mode == 'loss' else out


class _RecordLR(Hook):
    """Records the lr each iteration trains with; crashes if asked."""
    priority = 'LOWEST'

    def __init__(self, crash_at=None):
        self.lrs, self.crash_at = {}, crash_at

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        self.lrs[runner.iter] = runner.optim_wrapper.get_lr()['lr'][0]

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        if runner.iter + 1 == self.crash_at:
            raise RuntimeError('simulated crash')


def _runner(work_dir, hook, resume=False):
    return Runner(
        model=_Model(),
        work_dir=str(work_dir),
        train_dataloader=dict(
            dataset=_Data(),
            sampler=dict(type='DefaultSampler', shuffle=False),
            batch_size=4,
            collate_fn=dict(type='default_collate')),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=LR0)),
        param_scheduler=[
            dict(type='mmlt.FixMatchCosineLR', by_epoch=True,
                 convert_to_iter_based=True)
        ],
        train_cfg=dict(by_epoch=True, max_epochs=3),
        default_hooks=dict(
            checkpoint=dict(type='CheckpointHook', interval=1)),
        custom_hooks=[hook],
        resume=resume,
        default_scope='mmengine')


@pytest.mark.slow
def test_a_runner_trains_each_iteration_at_the_closed_form(tmp_path):
    # 3 epochs of 3 iterations: end defaults to the last epoch, K = 9
    hook = _RecordLR()
    _runner(tmp_path / 'full', hook).train()
    assert sorted(hook.lrs) == list(range(9))
    for k, lr in hook.lrs.items():
        assert lr == pytest.approx(closed_form(k, 9), rel=1e-12), k
    # crash in epoch 2 (after the epoch-1 checkpoint), resume: the same lrs
    crashing = _RecordLR(crash_at=5)
    with pytest.raises(RuntimeError, match='simulated crash'):
        _runner(tmp_path / 'resumed', crashing).train()
    resumed = _RecordLR()
    _runner(tmp_path / 'resumed', resumed, resume=True).train()
    assert sorted(resumed.lrs) == list(range(3, 9))
    for k, lr in resumed.lrs.items():
        assert lr == hook.lrs[k], k
