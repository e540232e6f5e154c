"""A step whose features overflow (an fp16 overflow) is skipped, with and
without --amp (bfloat16 autocast on this CPU): training finishes with
finite weights, the optimizer step and the ProCo estimator skip that batch,
and persistent non-finite steps stop training with a clear error. A skipped
step also leaves the BatchNorm statistics as they were before its batches
(a real Runner with a tiny model and one NaN batch)."""
import pytest
import torch
import torch.nn as nn
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch.utils.data import Dataset

import mmlt.engine  # noqa: F401  (registers the optimizer wrappers)
from test_train_resume import run_train, write_tiny_config

pytest.importorskip('mmpretrain')

POISON = ("custom_hooks = [dict(type='mmlt.ClassCountsHook'), "
          "dict(type='mmlt.VMFWindowHook'), "
          "dict(type='PoisonFeatures', at_iter={at}, value={value})]\n"
          "train_cfg = dict(max_epochs=1, val_interval=1)\n")


def poison_hook(runner):
    return next(h for h in runner.hooks
                if type(h).__name__ == 'PoisonFeatures')


@pytest.mark.slow
@pytest.mark.parametrize('amp', [False, True])
@pytest.mark.parametrize('value', ['float("inf")', 'float("nan")'])
def test_one_overflowing_step_is_skipped(tmp_path, amp, value):
    cfg = write_tiny_config(tmp_path, extra=POISON.format(at=3, value=value))
    runner = run_train(cfg, tmp_path / 'work', *(['--amp'] if amp else []))
    wrapper = runner.optim_wrapper
    assert type(wrapper).__name__ == ('Bfloat16AmpOptimWrapper'
                                      if amp else 'SkipNonFiniteOptimWrapper')
    if amp:
        assert wrapper.cast_dtype == torch.bfloat16
    assert wrapper.skipped_steps == 1
    model = getattr(runner.model, 'module', runner.model)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    # the estimator did not take the poisoned batch
    hook = poison_hook(runner)
    assert hook.before and hook.before.keys() == hook.after.keys()
    for name, value in hook.before.items():
        assert torch.equal(value, hook.after[name]), name
    # SGD's momentum buffers took one step less than there were iterations
    assert runner.iter == len(runner.train_dataloader)


@pytest.mark.slow
def test_persistent_nonfinite_steps_stop_training(tmp_path):
    extra = POISON.format(at=2, value='float("nan")') + (
        "optim_wrapper = dict(max_nonfinite_steps=1)\n")
    cfg = write_tiny_config(tmp_path, extra=extra)
    with pytest.raises(FloatingPointError,
                       match='up to iteration 3 had NaN/Inf gradients'):
        run_train(cfg, tmp_path / 'work')


@pytest.mark.slow
def test_amp_on_the_cpu_trains_bcl(tmp_path):
    cfg = write_tiny_config(
        tmp_path, 'bcl_fashionmnistlt.py',
        "train_cfg = dict(max_epochs=1, val_interval=1)\n")
    runner = run_train(cfg, tmp_path / 'work', '--amp')
    assert runner.optim_wrapper.cast_dtype == torch.bfloat16
    assert runner.optim_wrapper.skipped_steps == 0
    model = getattr(runner.model, 'module', runner.model)
    assert all(torch.isfinite(p).all() for p in model.parameters())


# --------------------------------------------------------------------------
# BatchNorm statistics of a skipped step (a real Runner, a tiny model)
# --------------------------------------------------------------------------
BATCH, N_BATCHES = 4, 6


class BNRegressor(BaseModel):
    """BatchNorm first, so its statistics depend on the data only."""

    def __init__(self):
        super().__init__()
        self.bn = nn.BatchNorm1d(3)
        self.fc = nn.Linear(3, 1)

    def forward(self, inputs, targets=None, mode='tensor'):
        out = self.fc(self.bn(inputs)).squeeze(-1).float()
        if mode == 'loss':
            return dict(loss=((out - targets)**2).mean())
        return out


def regression_data(nan_batch):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(BATCH * N_BATCHES, 3, generator=gen) * 2 + 1
    y = x @ torch.tensor([0.5, -1.0, 2.0])
    if nan_batch is not None:
        x[nan_batch * BATCH + 1] = float('nan')  # one sample of that batch
    return x, y


class Rows(Dataset):

    def __init__(self, nan_batch):
        self.x, self.y = regression_data(nan_batch)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return dict(inputs=self.x[i], targets=self.y[i])


class RecordState(Hook):
    """The model's parameters and BatchNorm buffers around every iteration."""

    def __init__(self):
        self.before, self.after = {}, {}

    @staticmethod
    def state(runner):
        model = getattr(runner.model, 'module', runner.model)
        return {k: v.detach().clone() for k, v in model.state_dict().items()}

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        self.before[batch_idx] = self.state(runner)

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        self.after[batch_idx] = self.state(runner)


def train_bn_regressor(tmp_path, wrapper, nan_batch, accumulate=1):
    torch.manual_seed(0)
    recorder = RecordState()
    runner = Runner(
        model=BNRegressor(),
        work_dir=str(tmp_path / 'work'),
        experiment_name=f'{tmp_path.name}_{wrapper}_{nan_batch}',
        train_dataloader=dict(
            dataset=Rows(nan_batch),
            sampler=dict(type='DefaultSampler', shuffle=False),
            batch_size=BATCH,
            collate_fn=dict(type='default_collate')),
        optim_wrapper=dict(
            type=wrapper,
            optimizer=dict(type='SGD', lr=0.01, momentum=0.9),
            accumulative_counts=accumulate),
        train_cfg=dict(by_epoch=True, max_epochs=1),
        custom_hooks=[recorder],
        default_hooks=dict(checkpoint=None),
        default_scope='mmengine')
    runner.train()
    return runner, recorder


def replayed_bn(batches):
    """Running statistics of a fresh BatchNorm fed only ``batches``."""
    x, _ = regression_data(None)
    bn = nn.BatchNorm1d(3)
    for b in batches:
        bn(x[b * BATCH:(b + 1) * BATCH])
    return {k: v for k, v in bn.state_dict().items()}


WRAPPERS = ['mmlt.SkipNonFiniteOptimWrapper', 'mmlt.AmpOptimWrapper']
BN_KEYS = ('running_mean', 'running_var', 'num_batches_tracked')


@pytest.mark.parametrize('wrapper', WRAPPERS)
def test_skipped_step_leaves_batchnorm_statistics_as_before(tmp_path,
                                                            wrapper):
    nan_batch = 2
    runner, rec = train_bn_regressor(tmp_path, wrapper, nan_batch)
    assert runner.optim_wrapper.skipped_steps == 1
    before, after = rec.before[nan_batch], rec.after[nan_batch]
    # the NaN batch left every buffer and weight exactly as it found them
    for key in before:
        assert torch.equal(before[key], after[key]), key
    # ... while the other batches moved both
    for b in (1, 3):
        assert not torch.equal(rec.before[b]['bn.running_mean'],
                               rec.after[b]['bn.running_mean'])
        assert not torch.equal(rec.before[b]['fc.weight'],
                               rec.after[b]['fc.weight'])
    # the statistics are those of the finite batches alone
    final = rec.after[N_BATCHES - 1]
    expected = replayed_bn([b for b in range(N_BATCHES) if b != nan_batch])
    assert final['bn.num_batches_tracked'].item() == N_BATCHES - 1
    for name in BN_KEYS:
        torch.testing.assert_close(final[f'bn.{name}'], expected[name])


@pytest.mark.parametrize('wrapper', WRAPPERS)
@pytest.mark.parametrize('nan_batch', [2, 3])
def test_skipped_accumulated_step_restores_its_whole_window(
        tmp_path, wrapper, nan_batch):
    # accumulative_counts=2: batches (0, 1), (2, 3), (4, 5) make one step
    # each; a NaN in either batch of (2, 3) skips that step, so neither
    # batch may leave its statistics behind
    runner, rec = train_bn_regressor(tmp_path, wrapper, nan_batch, 2)
    assert runner.optim_wrapper.skipped_steps == 1
    before, after = rec.before[2], rec.after[3]
    for key in before:
        assert torch.equal(before[key], after[key]), key
    final = rec.after[N_BATCHES - 1]
    expected = replayed_bn([0, 1, 4, 5])
    assert final['bn.num_batches_tracked'].item() == 4
    for name in BN_KEYS:
        torch.testing.assert_close(final[f'bn.{name}'], expected[name])


def test_finite_run_keeps_every_batch_in_the_statistics(tmp_path):
    _, rec = train_bn_regressor(tmp_path, WRAPPERS[0], None, 2)
    expected = replayed_bn(range(N_BATCHES))
    for name in BN_KEYS:
        torch.testing.assert_close(rec.after[N_BATCHES - 1][f'bn.{name}'],
                                   expected[name])
