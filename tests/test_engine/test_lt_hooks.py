"""VMFWindowHook and ClassCountsHook on real Runners (toy models)."""
import numpy as np
import pytest
import torch
import torch.nn as nn
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch.utils.data import ConcatDataset, Dataset

from mmlt.datasets.lt_base import class_counts
from mmlt.engine.hooks import ClassCountsHook, VMFWindowHook
from mmlt.engine.protocols import HasStatisticsWindow
from mmlt.models.losses import ProCoLoss


class ToyData(Dataset):
    """12 samples of 3 classes; get_cat_ids like an mmengine dataset."""

    def __init__(self, labels=(0, 0, 0, 0, 0, 0, 1, 1, 1, 2, 2, 0),
                 classes=('a', 'b', 'c')):
        self.labels = list(labels)
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(len(self.labels), 4, generator=g)
        self.metainfo = dict(classes=classes)

    def __len__(self):
        return len(self.labels)

    def get_cat_ids(self, idx):
        return [self.labels[idx]]

    def __getitem__(self, idx):
        return dict(inputs=self.x[idx], labels=torch.tensor(self.labels[idx]))


class ToyProCo(BaseModel):

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(4, 3)
        self.loss = ProCoLoss(num_classes=3, feat_dim=3, temperature=0.5)

    def forward(self, inputs, labels, mode='tensor'):
        z = nn.functional.normalize(self.proj(inputs), dim=1)
        if mode == 'loss':
            return dict(loss=self.loss(z, labels))
        return z


def make_runner(work_dir, by_epoch, resume=False, window_iters=None,
                dataset=None, crash_at=None):
    torch.manual_seed(0)
    if by_epoch:
        train_cfg = dict(by_epoch=True, max_epochs=3)
        ckpt = dict(type='CheckpointHook', interval=1)
    else:
        train_cfg = dict(by_epoch=False, max_iters=12)
        ckpt = dict(type='CheckpointHook', interval=4, by_epoch=False)
    hooks = [dict(type='mmlt.ClassCountsHook'),
             dict(type='mmlt.VMFWindowHook', window_iters=window_iters)]
    if crash_at is not None:
        hooks.append(_Crash(crash_at))
    return Runner(
        model=ToyProCo(),
        work_dir=str(work_dir),
        train_dataloader=dict(
            dataset=dataset or ToyData(),
            sampler=dict(type='DefaultSampler', shuffle=True, seed=1),
            batch_size=4,
            collate_fn=dict(type='default_collate')),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)),
        train_cfg=train_cfg,
        default_hooks=dict(checkpoint=ckpt),
        custom_hooks=hooks,
        resume=resume,
        randomness=dict(seed=1),
        default_scope='mmengine')


from mmengine.hooks import Hook  # noqa: E402


class _Crash(Hook):
    priority = 'LOWEST'

    def __init__(self, at_iter):
        self.at_iter = at_iter

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        if runner.iter + 1 == self.at_iter:
            raise RuntimeError('simulated crash')


def estimator_state(runner):
    est = runner.model.loss.estimator
    return {k: v.clone() for k, v in est.state_dict().items()}


@pytest.mark.slow
def test_epoch_windows_keep_last_and_current_epoch(tmp_path):
    runner = make_runner(tmp_path, by_epoch=True)
    runner.train()
    est = runner.model.loss.estimator
    # 3 epochs of 12 samples: the window holds epochs 2 and 3
    assert est.current_counts.tolist() == [7, 3, 2]
    assert est.previous_counts.tolist() == [7, 3, 2]
    assert int(est.window_epoch) == 2
    # ClassCountsHook set the loss prior from the dataset
    expected = torch.tensor([7, 3, 2], dtype=torch.float64) / 12
    torch.testing.assert_close(runner.model.loss.log_prior.exp().double(),
                               expected)


@pytest.mark.slow
def test_iteration_windows(tmp_path):
    runner = make_runner(tmp_path, by_epoch=False, window_iters=5)
    runner.train()
    est = runner.model.loss.estimator
    # 12 iterations of 4 samples, windows start at iters 0, 5, 10:
    # the current window holds iters 10-11, the previous one iters 5-9
    assert est.current_counts.sum().item() == 2 * 4
    assert est.previous_counts.sum().item() == 5 * 4
    assert int(est.window_epoch) == 2


@pytest.mark.slow
def test_iteration_windows_in_an_epoch_based_loop(tmp_path):
    runner = make_runner(tmp_path, by_epoch=True, window_iters=5)
    runner.train()
    est = runner.model.loss.estimator
    # 3 epochs of 3 iterations: windows start at iters 0 and 5 (not at the
    # epoch starts 0, 3, 6): the current one holds iters 5-8
    assert est.current_counts.sum().item() == 4 * 4
    assert est.previous_counts.sum().item() == 5 * 4
    assert int(est.window_epoch) == 1


@pytest.mark.slow
@pytest.mark.parametrize('by_epoch, window_iters', [(True, None),
                                                    (True, 5), (False, 5)])
def test_resume_restores_estimator_exactly(tmp_path, by_epoch,
                                           window_iters):
    full = make_runner(tmp_path / 'full', by_epoch, window_iters=window_iters)
    full.train()
    expected = estimator_state(full)
    crash_at = 6 if by_epoch else 8  # after epoch 2 / iteration 8
    part = make_runner(tmp_path / 'part', by_epoch, window_iters=window_iters,
                       crash_at=crash_at)
    with pytest.raises(RuntimeError, match='simulated crash'):
        part.train()
    resumed = make_runner(tmp_path / 'part', by_epoch,
                          window_iters=window_iters, resume=True)
    resumed.train()
    got = estimator_state(resumed)
    for key, value in expected.items():
        torch.testing.assert_close(got[key], value, rtol=0, atol=1e-12)


def test_dataset_class_counts_unwraps_and_counts_cat_ids():
    data = ToyData()
    assert class_counts(data).tolist() == [7, 3, 2]
    # repeating a dataset does not change its prior; concatenation adds
    class Repeat:  # the shape of mmengine's RepeatDataset

        def __init__(self, dataset, times):
            self.dataset, self.times = dataset, times

    assert class_counts(Repeat(data, 3)).tolist() == [7, 3, 2]
    concat = ConcatDataset([data, ToyData(labels=(2, 2))])
    assert class_counts(concat).tolist() == [7, 3, 4]
    with pytest.raises(ValueError, match='expects 5'):
        class_counts(data, num_classes=5)


def test_class_count_mismatch_is_a_clear_error(tmp_path):
    runner = make_runner(tmp_path, by_epoch=True,
                         dataset=ToyData(labels=(0, 1, 0, 1),
                                         classes=('a', 'b')))
    with pytest.raises(ValueError, match='2 entries'):
        runner.train()


def test_explicit_counts_override_dataset():
    hook = ClassCountsHook(class_counts=[1, 2, 3])
    assert np.array_equal(hook._get_counts(runner=None), [1, 2, 3])


def _window_worker(rank, port):
    """Iteration windows on one rank of two, with MMEngine's InfiniteSampler
    (whose len() is the whole dataset's size on every rank)."""
    import types

    import torch.distributed as torch_dist
    from mmengine.dataset import InfiniteSampler
    from torch.utils.data import DataLoader
    from mmengine.runner import IterBasedTrainLoop

    from dist_launch import init_gloo
    init_gloo(rank, port)
    try:
        dataset = list(range(8))
        loader = DataLoader(dataset, batch_size=2,
                            sampler=InfiniteSampler(dataset, shuffle=False))
        starts = []

        class Estimator(torch.nn.Module, HasStatisticsWindow):

            def start_epoch(self, index):
                starts.append(index)

        model = torch.nn.Module()
        model.estimator = Estimator()
        loop = IterBasedTrainLoop.__new__(IterBasedTrainLoop)
        runner = types.SimpleNamespace(
            model=model, train_loop=loop, train_dataloader=loader, iter=0)
        hook = VMFWindowHook()
        seen = set()
        batches = iter(loader)
        for iteration in range(8):
            runner.iter = iteration
            hook.before_train_iter(runner, iteration)
            if iteration < 2:
                seen.update(next(batches).tolist())
        return dict(starts=starts, seen_in_window=sorted(seen))
    finally:
        torch_dist.destroy_process_group()


def test_iteration_window_is_one_pass_per_rank_with_infinite_sampler(port):
    from dist_launch import run_two_ranks
    ranks = run_two_ranks(_window_worker, port)
    for result in ranks:
        # 8 samples, 2 ranks, batch 2: one pass per rank is 2 iterations
        # (len(dataloader) says 4: the bug this guards against)
        assert result['starts'] == [0, 1, 2, 3]
    # the two ranks' first windows together cover the dataset once
    assert sorted(ranks[0]['seen_in_window'] +
                  ranks[1]['seen_in_window']) == list(range(8))


def test_pseudo_count_gives_empty_classes_a_finite_prior():
    """A class without training samples: log(0) is refused, a pseudo-count
    gives every module the prior of counts + pseudo_count, by hand."""
    import types

    from mmlt.models.losses import LogitAdjustLoss

    class Model(nn.Module):

        def __init__(self):
            super().__init__()
            self.loss = LogitAdjustLoss()

    counts = [6, 3, 0]
    runner = types.SimpleNamespace(model=Model(), val_loop=None)
    # refused before any module is touched, naming the option to set
    with pytest.raises(ValueError, match=r'classes \[2\].*pseudo_count=1'):
        ClassCountsHook(class_counts=counts).before_train(runner)
    ClassCountsHook(class_counts=counts, pseudo_count=1).before_train(runner)
    expected = torch.log(torch.tensor([7.0, 4.0, 1.0], dtype=torch.float64) /
                         12)
    torch.testing.assert_close(runner.model.loss.log_prior, expected)
    with pytest.raises(ValueError, match='pseudo_count'):
        ClassCountsHook(pseudo_count=-1)
