"""Resume under torch >= 2.6 keeps weights_only=True and refuses other objects."""
import os
import pickle

import pytest
import torch
import torch.nn as nn
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch.utils.data import Dataset

import mmlt  # noqa: F401  (applies the compat fixes)
from mmlt.utils.checkpoint import CheckpointLoadError


class ToyModel(BaseModel):

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3, 1)
        self.register_buffer('seen', torch.zeros((), dtype=torch.long))

    def forward(self, inputs, targets, mode='tensor'):
        out = self.linear(inputs).squeeze(-1)
        if mode == 'loss':
            self.seen += inputs.shape[0]
            return dict(loss=((out - targets)**2).mean())
        return out


class ToyData(Dataset):

    def __init__(self):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(32, 3, generator=g)
        self.y = self.x @ torch.tensor([1.0, -2.0, 0.5]) + 0.3

    def __len__(self):
        return 32

    def __getitem__(self, i):
        return dict(inputs=self.x[i], targets=self.y[i])


class Crash(Hook):
    """Stops training with an error after a given epoch, like a lost node."""
    priority = 'LOWEST'  # after CheckpointHook has saved

    def __init__(self, after_epoch):
        self.after_epoch = after_epoch

    def after_train_epoch(self, runner):
        if runner.epoch + 1 == self.after_epoch:
            raise RuntimeError('simulated crash')


def make_runner(work_dir, max_epochs=4, resume=False, crash_after=None):
    torch.manual_seed(0)  # the same initial weights for every run
    return Runner(
        custom_hooks=[Crash(crash_after)] if crash_after else None,
        model=ToyModel(),
        work_dir=str(work_dir),
        train_dataloader=dict(
            dataset=ToyData(),
            sampler=dict(type='DefaultSampler', shuffle=True, seed=3),
            batch_size=8,
            collate_fn=dict(type='default_collate')),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.05, momentum=0.9)),
        param_scheduler=dict(type='MultiStepLR', milestones=[2], gamma=0.5),
        train_cfg=dict(by_epoch=True, max_epochs=max_epochs),
        default_hooks=dict(
            checkpoint=dict(type='CheckpointHook', interval=1),
            logger=dict(type='LoggerHook', interval=1)),
        randomness=dict(seed=3),
        resume=resume,
        default_scope='mmengine')


def test_torch_load_default_is_weights_only():
    # The fix is only meaningful where torch refuses arbitrary pickles.
    from mmengine.utils import digit_version
    if digit_version(torch.__version__.split('+')[0]) < digit_version('2.6'):
        pytest.skip('torch < 2.6 does not load weights_only by default')
    import inspect
    default = inspect.signature(torch.load).parameters['weights_only'].default
    assert default in (None, True)


def test_resume_real_runner_matches_uninterrupted(tmp_path):
    full = make_runner(tmp_path / 'full')
    full.train()
    expected = {k: v.clone() for k, v in full.model.state_dict().items()}

    part = make_runner(tmp_path / 'part', crash_after=2)
    with pytest.raises(RuntimeError, match='simulated crash'):
        part.train()
    ckpt = tmp_path / 'part' / 'epoch_2.pth'
    assert ckpt.exists()
    # The checkpoint holds mmengine's non-tensor objects (HistoryBuffer, numpy).
    serialization = torch.serialization
    allowed = serialization.get_safe_globals()
    serialization.clear_safe_globals()
    try:
        unsafe = serialization.get_unsafe_globals_in_checkpoint(str(ckpt))
    finally:
        serialization.add_safe_globals(allowed)
    assert 'mmengine.logging.history_buffer.HistoryBuffer' in unsafe

    resumed = make_runner(tmp_path / 'part', resume=True)
    resumed.train()
    assert resumed.epoch == 4
    got = resumed.model.state_dict()
    for key, value in expected.items():
        torch.testing.assert_close(got[key], value, rtol=0, atol=1e-6)
    assert int(got['seen']) == 4 * 32
    # the message hub came back too (its HistoryBuffer was unpickled)
    hub = resumed.message_hub.log_scalars['train/loss']
    assert len(hub.data[0]) > 0


class _Evil:

    def __reduce__(self):
        return (os.system, ('echo pwned > ' + _Evil.target, ))


def test_malicious_checkpoint_is_refused(tmp_path):
    from mmengine.runner.checkpoint import _load_checkpoint
    target = tmp_path / 'pwned'
    _Evil.target = str(target)
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {'w': torch.ones(1)}, 'meta': _Evil()}, path)
    # torch's weights-only unpickler refuses it; mmlt names the file
    with pytest.raises(CheckpointLoadError, match='evil.pth was refused') \
            as refused:
        _load_checkpoint(str(path), map_location='cpu')
    assert isinstance(refused.value.__cause__, pickle.UnpicklingError)
    assert not target.exists()


def test_getattr_is_restricted_to_history_buffer(tmp_path):
    # A crafted pickle that uses getattr to reach os.system through an
    # allowed class must be refused too.
    from mmengine.logging import HistoryBuffer

    class _GetattrAttack:

        def __reduce__(self):
            return (getattr, (HistoryBuffer, '__init__'))

    path = tmp_path / 'getattr.pth'
    torch.save({'x': _GetattrAttack()}, path)
    with pytest.raises(pickle.UnpicklingError, match='refused getattr'):
        torch.load(str(path))
    # the legitimate use is still accepted
    ok = tmp_path / 'ok.pth'
    buf = HistoryBuffer()
    buf.update(2.0)
    torch.save({'hb': buf}, ok)
    loaded = torch.load(str(ok))['hb']
    assert loaded.mean() == 2.0
