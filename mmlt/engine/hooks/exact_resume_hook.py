"""Make a resumed run continue exactly as if it had never stopped.

MMEngine restores weights, optimizer, schedulers and the epoch/iteration on
``--resume``, but nothing random: a restarted process re-seeds once, so its
augmentations, dropout and RoI sampling differ from the run it continues, and
its data-loader workers (seeded from ``(seed, rank, worker)`` only) replay the
same augmentation stream every epoch. Mid-epoch checkpoints
(``CheckpointHook(by_epoch=False)``) resume at the start of their epoch and
train its first iterations twice.

:class:`ExactResumeHook` makes every random draw a function of where the run
is, never of how it got there, through pieces the config names:

- the training dataset seeds each sample's pipeline from ``(seed, epoch,
  index)`` just before it runs, in whichever process loads it (main process,
  worker, persistent worker), so augmentations do not depend on restarts, on
  the number of workers or on the number of GPUs. mmlt's datasets do this
  themselves; wrap any other in ``mmlt.SeededDataset`` (or use
  ``mmlt.ClassBalancedDataset`` for repeat-factor sampling). The hook hands
  the dataset (:class:`~mmlt.engine.protocols.SeedsItems`) its seed key;
- the training process of each rank is seeded from ``(seed, rank, iter)``
  before every iteration (dropout, RoI sampling, anything in the step) and
  from ``(seed, rank, epoch)`` before every epoch (epoch-level hooks such as
  PCL's clustering);
- checkpoints also carry every rank's Python, NumPy, torch and (current
  device's) CUDA states, gathered right before each checkpoint that
  ``CheckpointHook`` saves (its ``interval``, ``save_begin`` and
  ``save_last``), restored on resume;
- a run resumed from a mid-epoch checkpoint skips the indices its epoch had
  already used, so no sample is repeated or skipped, also on another number
  of processes: checkpoints record how many entries of the epoch's order all
  ranks together had used, and the training sampler
  (:class:`~mmlt.engine.protocols.SkipsFirstIndices`: ``mmlt.ResumableSampler``
  and mmlt's class-aware and multi-source samplers) leaves them out
  (docs/resume.md says what else changes with the world size).

Sampler order is already a function of ``(seed, epoch)`` in MMEngine's and
mmlt's samplers. On a GPU, bitwise equality also needs deterministic kernels
(``randomness=dict(deterministic=True)``); without them a resumed run is as
close to the original as two uninterrupted runs are to each other.
"""
from typing import Optional

import torch
from mmengine.dist import all_gather_object, get_rank, get_world_size
from mmengine.hooks import CheckpointHook, Hook

from mmlt.datasets.stream_counts import loader_sampler
from mmlt.engine.protocols import SeedsItems, SkipsFirstIndices
from mmlt.registry import HOOKS
from mmlt.utils.seeding import (EPOCH_DOMAIN, STEP_DOMAIN,  # noqa: F401
                                derived_seed, random_states,
                                seed_everything, set_random_states)
from .utils import is_resuming


@HOOKS.register_module()
class ExactResumeHook(Hook):
    """Seeds from the run's position, random states in checkpoints, and
    mid-epoch resume that neither repeats nor skips samples.

    Turned on in the configs' ``default_runtime``. Each checkpoint grows by
    one set of generator states per rank (about 12 KB).

    Args:
        seed_samples (bool): Hand the training dataset its per-sample seed
            key, ``(seed, epoch)``. Defaults to True.
        seed_iterations (bool): Seed each rank's generators from
            ``(seed, rank, iteration)`` before every iteration. Defaults to
            True.
    """

    priority = 'VERY_HIGH'

    def __init__(self,
                 seed_samples: bool = True,
                 seed_iterations: bool = True) -> None:
        self.seed_samples = seed_samples
        self.seed_iterations = seed_iterations
        self._seed_key: Optional[torch.Tensor] = None
        self._skipping_sampler: Optional[SkipsFirstIndices] = None
        self._gathered_states = None
        self._iter_checkpoint_hooks = []
        self._resume_skip = 0
        # Where the current epoch stands: its indices each rank skipped at a
        # resume, its sampler's length after them, iterations done.
        self._position: Optional[dict] = None

    # -- per-sample seeds ------------------------------------------------
    @staticmethod
    def _epoch_based(runner) -> bool:
        from mmengine.runner import EpochBasedTrainLoop
        return isinstance(runner.train_loop, EpochBasedTrainLoop)

    def before_train(self, runner) -> None:
        self._iter_checkpoint_hooks = [
            hook for hook in runner.hooks
            if isinstance(hook, CheckpointHook) and not hook.by_epoch
        ]
        if not self.seed_samples:
            return
        if not self._epoch_based(runner):
            # An iteration-based loop reads one endless iterator: no epoch
            # boundary at which every process can agree on a new key.
            runner.logger.info(
                'ExactResumeHook: per-sample seeds need an epoch-based loop; '
                'this run keeps the per-iteration seeds and the random '
                'states in checkpoints')
            return
        dataset = runner.train_dataloader.dataset
        if not isinstance(dataset, SeedsItems):
            runner.logger.warning(
                f'ExactResumeHook: the training dataset '
                f'{type(dataset).__name__} does not seed its items, so a '
                'resumed run augments its samples differently. Wrap it: '
                "train_dataloader.dataset=dict(type='mmlt.SeededDataset', "
                "dataset=...) (mmlt.ClassBalancedDataset for repeat-factor "
                'sampling)')
            return
        self._seed_key = torch.zeros(2, dtype=torch.long).share_memory_()
        dataset.set_item_seed_key(self._seed_key)

    def before_train_epoch(self, runner) -> None:
        # Epoch-level work of other hooks (this hook runs first), e.g. the
        # k-means of PrototypeClusteringHook, draws from these seeds.
        if self.seed_iterations:
            seed_everything(
                derived_seed(EPOCH_DOMAIN, runner.seed, get_rank(),
                             runner.epoch))
        if self._seed_key is not None:
            self._seed_key.copy_(
                torch.tensor([runner.seed, runner.epoch], dtype=torch.long))
        if not self._epoch_based(runner):
            return  # MMEngine advances an iteration-based loop's iterator
        loader = runner.train_dataloader
        sampler = loader_sampler(loader)
        skip, self._resume_skip = self._resume_skip, 0
        if skip:
            sampler.skip_first(skip)
            self._skipping_sampler = sampler
        self._position = dict(
            epoch=runner.epoch,
            skipped=skip,
            length=len(sampler) if sampler is not None else None,
            iters=0,
            total_iters=len(loader))

    # -- mid-epoch resume ------------------------------------------------
    @staticmethod
    def _batch_size(loader) -> Optional[int]:
        return getattr(getattr(loader, 'batch_sampler', None), 'batch_size',
                       None)

    def _epoch_progress(self, runner, checkpoint: dict) -> dict:
        """Where in its epoch a checkpoint being saved stands.

        ``epoch_samples`` counts the entries of the epoch's sample order
        (the order every rank shards) that all ranks together have used, so
        a run with another number of processes can find its place;
        ``epoch_complete`` marks a checkpoint written at the epoch's last
        iteration.
        """
        world_size = get_world_size()
        progress = dict(
            world_size=world_size,
            batch_size=self._batch_size(runner.train_dataloader))
        meta_epoch = checkpoint.get('meta', {}).get('epoch')
        position = self._position
        if not self._epoch_based(runner) or meta_epoch is None:
            return progress
        progress.update(epoch=meta_epoch, epoch_samples=0,
                        epoch_complete=False)
        if (position is None or position['epoch'] != meta_epoch
                or position['length'] is None
                or progress['batch_size'] is None):
            return progress  # an epoch checkpoint: the next one is unbegun
        per_rank = position['skipped'] + min(
            position['iters'] * progress['batch_size'], position['length'])
        progress.update(
            epoch_samples=per_rank * world_size,
            epoch_complete=position['iters'] >= position['total_iters'])
        return progress

    def _trained_in_epoch(self, runner, meta: dict, progress: dict,
                          saved_world: int):
        """``(done, complete)``: entries of the resumed epoch's order that
        the saved run had trained, and whether it had finished the epoch."""
        epoch = meta.get('epoch', 0)
        batch_size = self._batch_size(runner.train_dataloader)
        if 'epoch_samples' in progress and progress.get('epoch') == epoch:
            return (int(progress['epoch_samples']),
                    bool(progress.get('epoch_complete', False)))
        if saved_world == get_world_size() and batch_size:
            # A checkpoint from before 'exact_resume' was saved: the
            # iterations of this world size and batch size.
            length = len(runner.train_dataloader)
            done_iters = meta.get('iter', 0) - epoch * length
            return (max(done_iters, 0) * batch_size * saved_world,
                    done_iters >= length)
        runner.logger.warning(
            'ExactResumeHook: the checkpoint does not say how much of '
            f'epoch {epoch + 1} its {saved_world} processes trained; the '
            'resumed epoch starts from its first batch')
        return 0, False

    def _plan_resumed_epoch(self, runner, meta: dict, progress: dict,
                            saved_world: int) -> None:
        """Decide how many indices each rank skips in the first epoch after
        a resume, and recount ``max_iters`` for this run.

        Samplers that shard like ``DefaultSampler`` give rank ``r`` of ``W``
        the entries ``r, r + W, r + 2W, ...`` of one order that depends on
        ``(seed, epoch)`` only (padded at its end to a multiple of ``W``), so
        skipping ``D / W`` indices on each rank skips exactly the first ``D``
        entries of the order, whatever the world size that used them.
        """
        loader = runner.train_dataloader
        epoch = meta.get('epoch', 0)
        self._resume_skip = 0
        if epoch >= runner.train_loop.max_epochs:
            return
        done, complete = self._trained_in_epoch(runner, meta, progress,
                                                saved_world)
        skip = 0
        if done > 0 or complete:
            skip = self._per_rank_skip(runner, done, complete)
        full_iters = left_iters = len(loader)
        if skip:
            sampler = loader_sampler(loader)
            sampler.skip_first(skip)
            try:
                left_iters = len(loader.batch_sampler)
            finally:
                sampler.skip_first(0)
            self._log_skip(runner, epoch, skip, done, progress, saved_world)
        self._resume_skip = skip
        # The checkpoint's iteration counts the saved run's iterations; the
        # loop's max_iters (max_epochs * this run's epoch length) is where
        # this run must end for the last-iteration checkpoint, the ETA and
        # gradient accumulation to be right.
        start_iter = meta.get('iter', 0)
        max_iters = start_iter + left_iters + (
            runner.train_loop.max_epochs - epoch - 1) * full_iters
        if runner.max_iters != max_iters:
            runner.logger.info(
                f'ExactResumeHook: this run ends at iteration {max_iters}, '
                f'not {runner.max_iters}: it continues from the '
                f"checkpoint's iteration {start_iter} with {left_iters} "
                f'iterations left in epoch {epoch + 1} and {full_iters} in '
                'each later epoch')
            # MMEngine has no setter; Runner.resume sets the loop's _epoch
            # and _iter the same way.
            runner.train_loop._max_iters = max_iters

    def _log_skip(self, runner, epoch: int, skip: int, done: int,
                  progress: dict, saved_world: int) -> None:
        batch_size = self._batch_size(runner.train_dataloader)
        same_batches = (saved_world == get_world_size()
                        and skip % batch_size == 0 and progress.get(
                            'batch_size', batch_size) == batch_size)
        runner.logger.info(
            f'ExactResumeHook: resuming inside epoch {epoch + 1}: ' +
            (f'skipping its first {skip // batch_size} iterations ({skip} '
             'samples per rank)' if same_batches else
             f'skipping the first {done} samples of its order, which '
             f'{saved_world} processes had trained ({skip} per rank here)'))

    def _per_rank_skip(self, runner, done: int, complete: bool) -> int:
        """Indices each rank leaves out: ``done / world_size``, in whole
        batches of samplers that yield batches; 0 (with a warning) when the
        sampler cannot skip."""
        loader = runner.train_dataloader
        sampler = loader_sampler(loader)
        if not isinstance(sampler, SkipsFirstIndices) or \
                self._batch_size(loader) is None:
            runner.logger.warning(
                'ExactResumeHook: the training sampler '
                f'{type(sampler).__name__} cannot leave out the indices its '
                'epoch had used, so the resumed epoch starts from its first '
                "batch; use sampler=dict(type='mmlt.ResumableSampler', ...) "
                "instead of 'DefaultSampler'")
            return 0
        world_size = get_world_size()
        if complete:
            return len(sampler)
        skip = done // world_size
        # Samplers that yield whole batches (MultiSourceSampler: labeled,
        # then unlabeled) must lose whole batches.
        unit = getattr(sampler, 'batch_size', None)
        if isinstance(unit, int) and unit > 0:
            skip -= skip % unit
        skip = min(skip, len(sampler))
        if skip * world_size < done:
            runner.logger.warning(
                f'ExactResumeHook: {done} samples of this epoch were trained, '
                f'which {world_size} processes cannot split evenly; each '
                f'skips {skip}, so {done - skip * world_size} samples are '
                'trained again')
        if type(loader.batch_sampler) is not torch.utils.data.BatchSampler:
            runner.logger.warning(
                f'ExactResumeHook: {type(loader.batch_sampler).__name__} may '
                f'group indices (e.g. by aspect ratio); skipping the first '
                f'{skip} indices resumes the epoch close to, not exactly at, '
                'where it stopped')
        return skip

    # -- per-iteration seeds ---------------------------------------------
    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        if self.seed_iterations:
            seed_everything(
                derived_seed(STEP_DOMAIN, runner.seed, get_rank(),
                             runner.iter))

    # -- random states in checkpoints ------------------------------------
    # Only rank 0 runs save_checkpoint, so every rank's states are gathered
    # just before CheckpointHook (lower priority) decides to save, by its
    # own rule.
    def _checkpoint_after_this_iter(self, runner) -> bool:
        return any(
            hook.every_n_train_iters(runner, hook.interval, hook.save_begin)
            or (hook.save_last and hook.is_last_train_iter(runner))
            for hook in self._iter_checkpoint_hooks)

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None) -> None:
        if self._position is not None:
            self._position['iters'] = batch_idx + 1
        if self._checkpoint_after_this_iter(runner):
            self._gathered_states = all_gather_object(random_states())

    def after_train_epoch(self, runner) -> None:
        if self._skipping_sampler is not None:
            self._skipping_sampler.skip_first(0)
            self._skipping_sampler = None
        self._gathered_states = all_gather_object(random_states())

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint['random_states'] = self._gathered_states or [
            random_states()
        ]
        # Where a resume, on any number of processes, continues the epoch
        # (plain integers: a checkpoint is data).
        checkpoint['exact_resume'] = self._epoch_progress(runner, checkpoint)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        if not is_resuming(runner):
            return
        states = checkpoint.get('random_states')
        progress = checkpoint.get('exact_resume')
        progress = dict(progress) if isinstance(progress, dict) else {}
        world_size = get_world_size()
        saved_world = progress.get(
            'world_size', len(states) if states else world_size)
        if saved_world != world_size:
            # The saved generator states are other ranks'; they are not
            # restored (the per-iteration seeds take over at the first
            # iteration).
            self._warn_world_size(runner, saved_world, world_size)
        elif states is not None:
            set_random_states(states[get_rank()])
        if self._epoch_based(runner):
            self._plan_resumed_epoch(runner, checkpoint.get('meta', {}),
                                     progress, saved_world)

    def _warn_world_size(self, runner, saved_world: int,
                         world_size: int) -> None:
        epoch_based = self._epoch_based(runner)
        exact = 'weights, optimizer, schedulers, estimator and class priors'
        if epoch_based:
            exact += (', the epoch\'s sample order (with samplers that shard '
                      'one order as DefaultSampler does, no sample of the '
                      'current epoch is repeated or skipped) and each '
                      'sample\'s augmentation')
        not_exact = ('which process loads which sample, so the batches, '
                     'their BatchNorm statistics and the per-process random '
                     'streams')
        if not epoch_based:
            not_exact += (', and the place in the data stream (MMEngine '
                          'skips as many of this run\'s batches as the '
                          'checkpoint has iterations)')
        runner.logger.warning(
            f'ExactResumeHook: resuming a checkpoint of {saved_world} '
            f'processes on {world_size}. Exact: {exact}. Not exact: '
            f'{not_exact}. With the same batch size per process the total '
            'batch size changes and the learning rate is not rescaled; the '
            'iteration count continues from the checkpoint\'s, and '
            'schedules in iterations advance one step per iteration of this '
            'run (docs/resume.md)')
