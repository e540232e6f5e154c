"""Hooks that only tests use (imported by test configs via custom_imports)."""
import os.path as osp

import torch
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class CrashAfterEpoch(Hook):
    """Raise after the given epoch, once its checkpoint is written."""
    priority = 'LOWEST'

    def __init__(self, epoch):
        self.epoch = epoch

    def after_train_epoch(self, runner):
        if runner.epoch + 1 == self.epoch:
            raise RuntimeError('simulated crash')


@HOOKS.register_module()
class DumpRankState(Hook):
    """Save every rank's model state_dict to work_dir/rank{r}.pth at the end."""
    priority = 'LOWEST'

    def after_train(self, runner):
        model = runner.model
        model = getattr(model, 'module', model)
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        torch.save(state, osp.join(runner.work_dir, f'rank{get_rank()}.pth'))


@HOOKS.register_module()
class PoisonFeatures(Hook):
    """Make the neck's output Inf/NaN in one iteration (an fp16 overflow)
    and record the ProCo estimator around that iteration."""
    priority = 'LOWEST'

    def __init__(self, at_iter, value=float('inf')):
        self.at_iter = at_iter
        self.value = value
        self.handle = None
        self.before = self.after = None

    @staticmethod
    def estimator_state(runner):
        model = getattr(runner.model, 'module', runner.model)
        return {
            name: buffer.clone()
            for name, buffer in model.named_buffers() if 'estimator' in name
        }

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if runner.iter != self.at_iter:
            return
        self.before = self.estimator_state(runner)
        model = getattr(runner.model, 'module', runner.model)
        value = self.value

        def poison(module, inputs, output):
            return tuple(o * value for o in output) if isinstance(
                output, tuple) else output * value

        self.handle = model.neck.register_forward_hook(poison)

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        if self.handle is not None:
            self.handle.remove()
            self.handle = None
            self.after = self.estimator_state(runner)


@HOOKS.register_module()
class BadLabelOnRank(Hook):
    """Give one rank's batch an out-of-range label at one iteration: that
    rank fails inside the step while the other waits in a collective."""
    priority = 'LOWEST'

    def __init__(self, rank, at_iter, label=999):
        self.rank = rank
        self.at_iter = at_iter
        self.label = label

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if get_rank() == self.rank and runner.iter == self.at_iter:
            data_batch['data_samples'][0].set_gt_label(self.label)


@HOOKS.register_module()
class CrashAfterIter(Hook):
    """Raise after the given (1-based) iteration, once its checkpoint, if
    any, is written (a hard kill inside an epoch)."""
    priority = 'LOWEST'

    def __init__(self, iteration):
        self.iteration = iteration

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        if runner.iter + 1 == self.iteration:
            raise RuntimeError('simulated crash')


class _FirstBatches:
    """A DataLoader that yields only its first ``num`` batches; everything
    else (sampler, batch_sampler, dataset) is the loader's."""

    def __init__(self, loader, num):
        self.loader, self.num = loader, num

    def __iter__(self):
        for index, batch in enumerate(self.loader):
            if index == self.num:
                return
            yield batch

    def __len__(self):
        return min(self.num, len(self.loader))

    def __getattr__(self, name):
        return getattr(self.loader, name)


@HOOKS.register_module()
class StopEpochAfterIters(Hook):
    """Epoch-based loops: every epoch ends after ``iters`` batches (the
    DDP matrix trains each config for 2 iterations). Iteration-based loops
    are left as they are (set ``max_iters``)."""
    priority = 'VERY_HIGH'

    def __init__(self, iters):
        self.iters = iters

    def before_train(self, runner):
        from mmengine.runner import EpochBasedTrainLoop
        loop = runner.train_loop
        if isinstance(loop, EpochBasedTrainLoop):
            loop.dataloader = _FirstBatches(loop.dataloader, self.iters)
            loop._max_iters = loop._max_epochs * len(loop.dataloader)


@HOOKS.register_module()
class RecordTrainedSamples(Hook):
    """What each rank trains, and what a (resumed) run starts from.

    Appends one JSON line per iteration to
    ``work_dir/samples_rank{r}.jsonl`` (rank, world size, epoch, iteration,
    the sampler's seed and the batch's ``sample_idx``), and saves the
    model's and optimizer's state and the counters at ``before_train``,
    i.e. after any resume, to ``work_dir/start_rank{r}.pth``.
    """
    priority = 'LOWEST'

    def before_train(self, runner):
        model = getattr(runner.model, 'module', runner.model)
        torch.save(
            dict(
                state_dict={
                    k: v.detach().cpu().clone()
                    for k, v in model.state_dict().items()
                },
                optimizer=runner.optim_wrapper.state_dict(),
                epoch=runner.epoch,
                iter=runner.iter,
                max_iters=runner.max_iters),
            osp.join(runner.work_dir, f'start_rank{get_rank()}.pth'))

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        import json

        from mmengine.dist import get_world_size
        record = dict(
            rank=get_rank(),
            world_size=get_world_size(),
            epoch=runner.epoch,
            iter=runner.iter,
            seed=getattr(runner.train_dataloader.sampler, 'seed', None),
            samples=[
                int(sample.metainfo['sample_idx'])
                for sample in data_batch['data_samples']
            ])
        path = osp.join(runner.work_dir, f'samples_rank{get_rank()}.jsonl')
        with open(path, 'a') as f:
            f.write(json.dumps(record) + '\n')
