"""A step whose features overflow (an fp16 overflow) is skipped, with and
without --amp (bfloat16 autocast on this CPU): training finishes with
finite weights, the optimizer step and the ProCo estimator skip that batch,
and persistent non-finite steps stop training with a clear error."""
import pytest
import torch

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
    assert type(wrapper).__name__ == ('AmpOptimWrapper'
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
