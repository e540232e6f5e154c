"""``tools/train.py --amp-dtype bfloat16`` trains the demo config: bfloat16
autocast (on this CPU, the CUDA path minus the device), no GradScaler, and
the same run as ``--amp`` on a machine without a GPU."""
import pytest
import torch
from mmengine.hooks import Hook

from mmengine.registry import HOOKS  # the root: a test hook, not mmlt's
from test_train_resume import model_state, run_train, write_tiny_config

pytest.importorskip('mmpretrain')


@HOOKS.register_module(force=True)
class RecordFeatureDtype(Hook):
    """The dtype of the backbone's output inside the training step."""

    def before_train(self, runner):
        self.dtypes = set()
        model = getattr(runner.model, 'module', runner.model)
        model.backbone.register_forward_hook(
            lambda module, args, out: self.dtypes.add(
                (out[-1] if isinstance(out, (tuple, list)) else out).dtype))


EXTRA = ("custom_hooks = [dict(type='mmlt.ClassCountsHook'), "
         "dict(type='mmlt.VMFWindowHook'), dict(type='RecordFeatureDtype')]\n"
         "train_cfg = dict(max_epochs=1, val_interval=1)\n"
         "val_dataloader = val_cfg = val_evaluator = None\n")


@pytest.mark.slow
def test_amp_dtype_bfloat16_trains_the_demo_config(tmp_path):
    cfg = write_tiny_config(tmp_path, extra=EXTRA)
    runner = run_train(cfg, tmp_path / 'bf16', '--amp-dtype', 'bfloat16')
    wrapper = runner.optim_wrapper
    assert type(wrapper).__name__ == 'Bfloat16AmpOptimWrapper'
    assert not hasattr(wrapper, 'loss_scaler')
    hook = next(h for h in runner.hooks
                if type(h).__name__ == 'RecordFeatureDtype')
    assert hook.dtypes == {torch.bfloat16}
    assert runner.iter == len(runner.train_dataloader) > 0
    state = model_state(runner)
    assert all(torch.isfinite(v).all() for v in state.values()
               if v.is_floating_point())
    if not torch.cuda.is_available():  # --amp means bfloat16 here
        plain = run_train(cfg, tmp_path / 'amp', '--amp')
        other = model_state(plain)
        assert all(torch.equal(state[k], other[k]) for k in state)
