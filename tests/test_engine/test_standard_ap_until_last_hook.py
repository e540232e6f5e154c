"""StandardAPUntilLastHook on a real Runner: validations before the last
one run in standard-only mode, the last one and a test in full mode."""
import pytest
import torch
import torch.nn as nn
from mmengine.evaluator import BaseMetric
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch.utils.data import Dataset

from mmlt.engine.protocols import HasStandardAPMode


class Data(Dataset):

    def __len__(self):
        return 4

    def __getitem__(self, idx):
        return dict(inputs=torch.full((2, ), float(idx)))


class Switch(nn.Module, HasStandardAPMode):
    """A module that records the mode it predicts in."""

    def __init__(self):
        super().__init__()
        self.standard_only = False

    def set_standard_only(self, standard_only):
        self.standard_only = standard_only


class Model(BaseModel):

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(2, 1)
        self.switch = Switch()

    def forward(self, inputs, data_samples=None, mode='tensor'):
        if mode == 'loss':
            return dict(loss=self.fc(inputs).pow(2).mean())
        return [dict(standard_only=self.switch.standard_only)] * len(inputs)


class ModeMetric(BaseMetric, HasStandardAPMode):
    """Reports the modes of the model and of itself at each evaluation."""

    def __init__(self):
        super().__init__()
        self.standard_only = False
        self.seen = []

    def set_standard_only(self, standard_only):
        self.standard_only = standard_only

    def process(self, data_batch, data_samples):
        self.results.extend(
            (sample['standard_only'], self.standard_only)
            for sample in data_samples)

    def compute_metrics(self, results):
        self.seen.append(set(results))
        return dict(periodic=float(all(model for model, _ in results)))


@pytest.mark.parametrize('by_epoch', [True, False])
def test_periodic_validations_are_standard_only(tmp_path, by_epoch):
    metric = ModeMetric()
    loader = dict(dataset=Data(), sampler=dict(type='DefaultSampler',
                                               shuffle=False),
                  batch_size=2, collate_fn=dict(type='default_collate'))
    train_cfg = dict(by_epoch=True, max_epochs=3, val_interval=1) \
        if by_epoch else dict(by_epoch=False, max_iters=6, val_interval=2)
    runner = Runner(
        model=Model(), work_dir=str(tmp_path), train_dataloader=loader,
        val_dataloader=loader, val_evaluator=[metric],
        test_dataloader=loader, test_evaluator=[metric],
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)),
        train_cfg=train_cfg, val_cfg=dict(), test_cfg=dict(),
        default_hooks=dict(checkpoint=None),
        custom_hooks=[dict(type='mmlt.StandardAPUntilLastHook')],
        default_scope='mmengine')
    runner.train()
    # (model, metric) modes of the 3 validations: two periodic, then full
    assert metric.seen == [{(True, True)}, {(True, True)}, {(False, False)}]
    runner.test()
    assert metric.seen[-1] == {(False, False)}
    runner.val()  # outside training: everything
    assert metric.seen[-1] == {(False, False)}
