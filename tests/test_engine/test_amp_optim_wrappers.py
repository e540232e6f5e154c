"""--amp-dtype: one wrapper per precision, bfloat16 without a GradScaler.

On this CPU the bfloat16 wrapper autocasts on the CPU (the same code path as
on CUDA, minus the device); the float16 wrapper needs CUDA and says so."""
import pytest
import torch
import torch.nn as nn
from mmengine.optim import OptimWrapper

from mmlt.engine.optim_wrappers import (AmpOptimWrapper,
                                        Bfloat16AmpOptimWrapper,
                                        Float16AmpOptimWrapper,
                                        default_amp_dtype)
from mmlt.registry import OPTIM_WRAPPERS
from mmlt.utils.launch import enable_amp
from mmengine.config import Config


def _optimizer():
    torch.manual_seed(0)
    return torch.optim.SGD(nn.Linear(4, 3).parameters(), lr=0.1)


@pytest.mark.skipif(torch.cuda.is_available(), reason='CPU defaults')
def test_dispatch_by_dtype_on_a_cpu():
    assert default_amp_dtype() == 'bfloat16'
    for dtype in (None, 'bfloat16', torch.bfloat16):
        built = OPTIM_WRAPPERS.build(
            dict(type='mmlt.AmpOptimWrapper', dtype=dtype,
                 optimizer=_optimizer()))
        assert type(built) is Bfloat16AmpOptimWrapper
        assert isinstance(built, OptimWrapper)
        assert not hasattr(built, 'loss_scaler')  # no GradScaler
        assert built.max_nonfinite_steps == 30
    with pytest.raises(RuntimeError, match='--amp-dtype bfloat16'):
        AmpOptimWrapper(dtype='float16', optimizer=_optimizer())
    with pytest.raises(RuntimeError, match='needs CUDA'):
        Float16AmpOptimWrapper(optimizer=_optimizer())
    with pytest.raises(ValueError, match="one of \\['bfloat16', 'float16'\\]"):
        AmpOptimWrapper(dtype='float8', optimizer=_optimizer())


def test_bfloat16_step_autocasts_and_matches_a_hand_step():
    torch.manual_seed(0)
    model, x = nn.Linear(4, 3), torch.randn(5, 4)
    reference = nn.Linear(4, 3)
    reference.load_state_dict(model.state_dict())
    wrapper = Bfloat16AmpOptimWrapper(
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    with wrapper.optim_context(model):
        out = model(x)
        assert out.dtype == torch.bfloat16
        loss = out.float().square().mean()
    wrapper.update_params(loss)
    # the same step by hand: bfloat16 autocast forward, plain SGD
    with torch.autocast('cpu', dtype=torch.bfloat16):
        hand_loss = reference(x).float().square().mean()
    hand_loss.backward()
    with torch.no_grad():
        for param in reference.parameters():
            param -= 0.1 * param.grad
    assert wrapper.skipped_steps == 0
    for ours, theirs in zip(model.parameters(), reference.parameters()):
        assert torch.equal(ours, theirs)


def test_a_float16_checkpoint_loads_into_bfloat16():
    model = nn.Linear(4, 3)
    wrapper = Bfloat16AmpOptimWrapper(
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    state = wrapper.state_dict()
    state['loss_scaler'] = dict(scale=65536.0)
    wrapper.load_state_dict(state)
    assert 'loss_scaler' not in wrapper.state_dict()


@pytest.mark.parametrize('dtype', [None, 'bfloat16', 'float16'])
def test_enable_amp_sets_the_config_key(dtype):
    cfg = Config(dict(optim_wrapper=dict(
        type='mmlt.SkipNonFiniteOptimWrapper', optimizer=dict(type='SGD'))))
    enable_amp(cfg, dtype)
    assert cfg.optim_wrapper.type == 'mmlt.AmpOptimWrapper'
    assert cfg.optim_wrapper.get('dtype') == dtype
