"""Hooks drive the modules that declare a protocol, and only those."""
import types

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmengine.runner import Runner

from mmlt.engine.hooks import (ClassCountsHook, MetricOutDirHook,
                               SemiSupervisedHook, VMFWindowHook)
from mmlt.engine.protocols import (HasPseudoLabelStats, HasStatisticsWindow,
                                   NeedsClassCounts, NeedsOutDir)
from mmlt.evaluation.metrics.long_tail_metric import LongTailAccuracy
from mmlt.models.losses import LogitAdjustLoss, ProCoLoss
from mmlt.models.vmf import VMFEstimator


def test_core_modules_declare_their_protocols():
    assert issubclass(ProCoLoss, NeedsClassCounts)
    assert issubclass(LogitAdjustLoss, NeedsClassCounts)
    assert issubclass(VMFEstimator, HasStatisticsWindow)
    assert issubclass(LongTailAccuracy, NeedsOutDir)
    # ProCo's window is its estimator's: the loss itself is not a target,
    # so the window hook swaps each window once.
    assert not issubclass(ProCoLoss, HasStatisticsWindow)
    loss = ProCoLoss(num_classes=3, feat_dim=4)
    windowed = [m for m in loss.modules()
                if isinstance(m, HasStatisticsWindow)]
    assert windowed == [loss.estimator]
    from mmlt.engine.protocols import NeedsPrototypes
    from mmlt.models.losses import ProtoNCELoss
    assert issubclass(ProtoNCELoss, NeedsPrototypes)


def test_mmpretrain_heads_declare_their_protocols():
    pytest.importorskip('mmpretrain')
    from mmlt.integrations.mmpretrain.contrastive_cls_head import \
        ContrastiveClsHead
    from mmlt.integrations.mmpretrain.fixmatch_cls_head import \
        FixMatchClsHead
    assert issubclass(ContrastiveClsHead, NeedsClassCounts)
    assert not issubclass(ContrastiveClsHead, HasPseudoLabelStats)
    assert issubclass(FixMatchClsHead, NeedsClassCounts)
    assert issubclass(FixMatchClsHead, HasPseudoLabelStats)
    from mmlt.engine.protocols import ExtractsClusteringFeatures
    from mmlt.models.selfsup.pcl import PCL
    assert issubclass(PCL, ExtractsClusteringFeatures)


def test_mmdet_modules_declare_their_protocols():
    pytest.importorskip('mmdet')
    from mmlt.integrations.mmdet.det_logit_adjust_loss import \
        DetLogitAdjustLoss
    from mmlt.integrations.mmdet.lvis_fixed_metric import LVISFixedMetric
    assert issubclass(DetLogitAdjustLoss, NeedsClassCounts)
    assert issubclass(LVISFixedMetric, NeedsOutDir)


class _Declared(nn.Module, NeedsClassCounts):

    def set_class_counts(self, counts):
        self.counts = np.asarray(counts).tolist()


class _SameName(nn.Module):
    """Has the method, does not declare the protocol."""

    def set_class_counts(self, counts):
        raise AssertionError('called by name')

    def start_epoch(self, index=None):
        raise AssertionError('called by name')

    def reset_pseudo_label_counts(self):
        raise AssertionError('called by name')

    def pseudo_label_stats(self):
        raise AssertionError('called by name')

    def set_out_dir(self, out_dir):
        raise AssertionError('called by name')


def test_protocol_without_its_methods_cannot_be_built():
    class Broken(nn.Module, NeedsClassCounts):
        pass

    with pytest.raises(TypeError, match='set_class_counts'):
        Broken()


def test_class_counts_hook_ignores_undeclared_modules_and_metrics():
    model = nn.Module()
    model.declared = _Declared()
    model.other = _SameName()
    declared_metric, other_metric = _Declared(), _SameName()
    runner = types.SimpleNamespace(
        model=model,
        work_dir='unused',
        val_loop=types.SimpleNamespace(evaluator=types.SimpleNamespace(
            metrics=[declared_metric, other_metric])))
    hook = ClassCountsHook(class_counts=[3, 2, 1], pseudo_count=1)
    hook.before_train(runner)
    assert model.declared.counts == [4, 3, 2]
    assert declared_metric.counts == [3, 2, 1]
    hook.before_val(runner)  # set_out_dir of the undeclared one not called
    assert declared_metric.counts == [3, 2, 1]


def test_out_dir_hook_gives_the_work_dir_to_declared_metrics_only():

    class Writer(NeedsOutDir):

        def __init__(self):
            self.out_dirs = []

        def set_out_dir(self, out_dir):
            self.out_dirs.append(out_dir)

    val_metric, test_metric = Writer(), Writer()
    runner = types.SimpleNamespace(
        work_dir='/runs/exp',
        val_loop=types.SimpleNamespace(evaluator=types.SimpleNamespace(
            metrics=[val_metric, _SameName()])),
        test_loop=types.SimpleNamespace(evaluator=types.SimpleNamespace(
            metrics=[test_metric])))
    hook = MetricOutDirHook()
    hook.before_val(runner)  # set_out_dir of the undeclared one not called
    assert val_metric.out_dirs == ['/runs/exp'] and test_metric.out_dirs == []
    hook.before_test(runner)
    assert test_metric.out_dirs == ['/runs/exp']


def test_long_tail_accuracy_writes_into_the_work_dir_the_hook_gives(
        tmp_path):
    metric = LongTailAccuracy(class_counts=[5, 1])
    runner = types.SimpleNamespace(
        work_dir=str(tmp_path),
        val_loop=types.SimpleNamespace(evaluator=types.SimpleNamespace(
            metrics=[metric])))
    MetricOutDirHook().before_val(runner)
    metric.process(None, [
        dict(pred_label=0, gt_label=0),
        dict(pred_label=0, gt_label=1)
    ])
    metric.compute_metrics(metric.results)
    with open(tmp_path / 'per_class_accuracy.csv') as f:
        assert len(f.read().splitlines()) == 3  # a header and two classes


def test_window_hook_ignores_undeclared_modules():
    starts = []

    class Window(nn.Module, HasStatisticsWindow):

        def start_epoch(self, epoch=None):
            starts.append(epoch)

    model = nn.Module()
    model.window = Window()
    model.other = _SameName()
    from mmengine.runner import EpochBasedTrainLoop
    loop = EpochBasedTrainLoop.__new__(EpochBasedTrainLoop)
    runner = types.SimpleNamespace(model=model, train_loop=loop, epoch=2)
    VMFWindowHook().before_train_epoch(runner)
    assert starts == [2]


def test_semi_supervised_hook_needs_a_declared_head():
    from mmlt.datasets.samplers.multi_source_sampler import \
        MultiSourceSampler
    sampler = MultiSourceSampler.__new__(MultiSourceSampler)
    sampler.num_per_source, sampler.batch_size = (1, 1), 2
    loader = types.SimpleNamespace(sampler=sampler, batch_size=2)
    model = nn.Module()
    model.other = _SameName()
    runner = types.SimpleNamespace(model=model, train_dataloader=loader)
    hook = SemiSupervisedHook()
    with pytest.raises(ValueError, match='no head with pseudo-label'):
        hook.before_train(runner)

    calls = []

    class Head(nn.Module, HasPseudoLabelStats):

        def reset_pseudo_label_counts(self):
            calls.append('reset')

        def pseudo_label_stats(self):
            calls.append('stats')
            return {}

    model.head = Head()
    hook.before_train(runner)
    sampler.num_batches = 4
    runner.iter, runner.epoch = 0, 0
    hook.before_train_epoch(runner)
    assert calls == ['reset']


class _ToyLA(nn.Module):

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.loss = LogitAdjustLoss()

    def forward(self, inputs, labels, mode='tensor'):
        if mode == 'loss':
            return dict(loss=self.loss(self.fc(inputs), labels))
        return self.fc(inputs)


def test_ema_copy_gets_the_counts_without_reaching_into_ema_hook(tmp_path):
    """ClassCountsHook sets the priors in before_run, before EMAHook copies
    the model: the copy has them (an unset LogitAdjustLoss prior is empty,
    which EMA's buffer sync could not copy into)."""
    from mmengine.model import BaseModel

    from test_lt_hooks import ToyData

    class Model(BaseModel):

        def __init__(self):
            super().__init__()
            self.net = _ToyLA()

        def forward(self, inputs, labels, mode='tensor'):
            return self.net(inputs, labels, mode)

    runner = Runner(
        model=Model(),
        work_dir=str(tmp_path),
        train_dataloader=dict(
            dataset=ToyData(),
            sampler=dict(type='DefaultSampler', shuffle=False),
            batch_size=4,
            collate_fn=dict(type='default_collate')),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)),
        train_cfg=dict(by_epoch=True, max_epochs=1),
        default_hooks=dict(checkpoint=None, logger=None),
        custom_hooks=[
            dict(type='mmlt.ClassCountsHook'),
            dict(type='EMAHook', priority='ABOVE_NORMAL')
        ],
        default_scope='mmengine')
    runner.train()
    expected = torch.log(torch.tensor([7.0, 3.0, 2.0], dtype=torch.float64) /
                         12)
    torch.testing.assert_close(runner.model.net.loss.log_prior, expected)
    ema = [h for h in runner.hooks if type(h).__name__ == 'EMAHook'][0]
    torch.testing.assert_close(ema.ema_model.module.net.loss.log_prior,
                               expected)
