"""Make a resumed run continue exactly as if it had never stopped.

MMEngine restores weights, optimizer, schedulers and the epoch/iteration on
``--resume``, but nothing random: a restarted process re-seeds once, so its
augmentations, dropout and RoI sampling differ from the run it continues, and
its data-loader workers (seeded from ``(seed, rank, worker)`` only) replay the
same augmentation stream every epoch. Mid-epoch checkpoints
(``CheckpointHook(by_epoch=False)``) resume at the start of their epoch and
train its first iterations twice.

:class:`ExactResumeHook` makes every random draw a function of where the run
is, never of how it got there:

- each training sample's pipeline is seeded from ``(seed, epoch, index)``
  just before it runs, in whichever process loads it (main process, worker,
  persistent worker), so augmentations do not depend on restarts, on the
  number of workers or on the number of GPUs;
- the training process of each rank is seeded from ``(seed, rank, iter)``
  before every iteration (dropout, RoI sampling, anything in the step) and
  from ``(seed, rank, epoch)`` before every epoch (epoch-level hooks such as
  PCL's clustering);
- checkpoints also carry every rank's Python, NumPy, torch and (current
  device's) CUDA states, restored on resume (for what runs between resume
  and the first iteration);
- a run resumed from a mid-epoch checkpoint skips the indices its epoch had
  already used, so no sample is repeated or skipped, also on another number
  of processes (checkpoints record how many entries of the epoch's order
  all ranks together had used; see docs/resume.md for what else changes
  with the world size).

Sampler order is already a function of ``(seed, epoch)`` in MMEngine's and
mmlt's samplers. On a GPU, bitwise equality also needs deterministic kernels
(``randomness=dict(deterministic=True)``); without them a resumed run is as
close to the original as two uninterrupted runs are to each other.
"""
import hashlib
import itertools
import random
from typing import Optional

import numpy as np
import torch
from mmengine.dist import all_gather_object, get_rank, get_world_size
from mmengine.hooks import CheckpointHook, Hook

from mmlt.registry import HOOKS

# Domains of the derived seeds, so a data seed never equals a step seed.
_DATA_DOMAIN, _STEP_DOMAIN, _EPOCH_DOMAIN = 1, 2, 3


def derived_seed(*keys: int) -> int:
    """A 32-bit seed from integers, well mixed (BLAKE2b of their digits)."""
    text = ','.join(str(int(k)) for k in keys).encode()
    return int.from_bytes(
        hashlib.blake2b(text, digest_size=4).digest(), 'little')


def seed_everything(seed: int, cuda: bool = True) -> None:
    """Seed Python's, NumPy's and torch's global generators.

    Args:
        seed (int): The seed.
        cuda (bool): Also every CUDA device (lazily), as ``torch.manual_seed``
            does; data pipelines need only the CPU generator, which is 80
            times cheaper to seed (1 us against 80 us here).
    """
    random.seed(seed)
    np.random.seed(seed)
    if cuda:
        torch.manual_seed(seed)
    else:
        torch.default_generator.manual_seed(seed)


def random_states() -> dict:
    """This process's generator states (about 12 KB pickled).

    Of CUDA, only the current device's generator: a process trains on one
    device, and a resumed process may see fewer devices than the one that
    saved (another ``CUDA_VISIBLE_DEVICES``, another world size).
    """
    states = dict(
        python=random.getstate(),
        numpy=np.random.get_state(),
        torch=torch.get_rng_state())
    if torch.cuda.is_available():
        states['cuda'] = torch.cuda.get_rng_state()
    return states


def set_random_states(states: dict) -> None:
    """Restore what :func:`random_states` returned.

    Checkpoints written before one CUDA state per process hold a list of
    every visible device's; the current device's entry is restored when it
    exists.
    """
    random.setstate(states['python'])
    np.random.set_state(states['numpy'])
    torch.set_rng_state(states['torch'])
    cuda = states.get('cuda')
    if cuda is None or not torch.cuda.is_available():
        return
    if isinstance(cuda, (list, tuple)):
        device = torch.cuda.current_device()
        if device >= len(cuda):
            return
        cuda = cuda[device]
    torch.cuda.set_rng_state(cuda)


def _seeded_getitem(self, idx):
    """Seed the generators from ``(seed, epoch, idx)``, then load the item.

    ``_mmlt_seed_key`` is a shared-memory ``[seed, epoch]`` tensor written by
    the hook in the main process and read by every worker (also persistent
    ones).
    """
    seed, epoch = self._mmlt_seed_key.tolist()
    seed_everything(derived_seed(_DATA_DOMAIN, seed, epoch, idx), cuda=False)
    return super(type(self), self).__getitem__(idx)


def _seeded_reduce_ex(self, protocol):
    # Pickled as the dataset's own class; workers started with 'spawn'
    # rebuild the seeded class on their side.
    return _rebuild_seeded, (type(self).__base__, self.__dict__)


_SEEDED_CLASSES = {}


def _seeded_class(cls: type) -> type:
    """A subclass of ``cls`` that seeds before each item (one per type).

    A direct subclass with no new slots, so an existing dataset object can
    take it as its ``__class__``."""
    if getattr(cls, '_mmlt_seeded', False):
        return cls
    if cls not in _SEEDED_CLASSES:
        _SEEDED_CLASSES[cls] = type(
            f'Seeded{cls.__name__}', (cls, ),
            dict(__slots__=(), _mmlt_seeded=True,
                 __getitem__=_seeded_getitem,
                 __reduce_ex__=_seeded_reduce_ex))
    return _SEEDED_CLASSES[cls]


def _rebuild_seeded(cls: type, state: dict):
    dataset = cls.__new__(cls)
    dataset.__dict__.update(state)
    dataset.__class__ = _seeded_class(cls)
    return dataset


class _SkipFirst:
    """A sampler that leaves out the first ``num_skipped`` indices of one
    pass of ``sampler`` (the part of an epoch trained before a restart)."""

    def __init__(self, sampler, num_skipped: int) -> None:
        self.sampler = sampler
        self.num_skipped = num_skipped

    def __iter__(self):
        return itertools.islice(iter(self.sampler), self.num_skipped, None)

    def __len__(self) -> int:
        return max(len(self.sampler) - self.num_skipped, 0)

    def __getattr__(self, name):
        if name == 'sampler':  # not set yet (unpickling)
            raise AttributeError(name)
        return getattr(self.sampler, name)


@HOOKS.register_module()
class ExactResumeHook(Hook):
    """Seeds from the run's position, random states in checkpoints, and
    mid-epoch resume that neither repeats nor skips samples.

    Turned on in the configs' ``default_runtime``. Costs, measured here:
    about 13 us per loaded sample (seeding three generators), 0.2 ms per
    iteration (CUDA generators included), and 12 KB per rank in each
    checkpoint.

    Args:
        seed_samples (bool): Seed each training sample's pipeline from
            ``(seed, epoch, index)``. Defaults to True.
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
        self._skipping_batch_sampler = None
        self._gathered_states = None
        self._iter_checkpoint_intervals = []
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
        # Intervals of the iteration checkpoints, looked up once, not per
        # iteration.
        self._iter_checkpoint_intervals = [
            hook.interval for hook in runner.hooks
            if isinstance(hook, CheckpointHook) and not hook.by_epoch
            and hook.interval > 0
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
        # DataLoader forbids replacing its dataset once built, so the
        # dataset's class gains the seeding __getitem__ instead.
        self._seed_key = torch.zeros(2, dtype=torch.long).share_memory_()
        dataset._mmlt_seed_key = self._seed_key
        dataset.__class__ = _seeded_class(type(dataset))

    def before_train_epoch(self, runner) -> None:
        # Epoch-level work of other hooks (this hook runs first), e.g. the
        # k-means of PrototypeClusteringHook, draws from these seeds.
        if self.seed_iterations:
            seed_everything(
                derived_seed(_EPOCH_DOMAIN, runner.seed, get_rank(),
                             runner.epoch))
        if self._seed_key is not None:
            self._seed_key.copy_(
                torch.tensor([runner.seed, runner.epoch], dtype=torch.long))
        if not self._epoch_based(runner):
            return  # MMEngine advances an iteration-based loop's iterator
        loader = runner.train_dataloader
        skip, self._resume_skip = self._resume_skip, 0
        if skip:
            batch_sampler = loader.batch_sampler
            batch_sampler.sampler = _SkipFirst(batch_sampler.sampler, skip)
            self._skipping_batch_sampler = batch_sampler
        batch_sampler = getattr(loader, 'batch_sampler', None)
        sampler = getattr(batch_sampler, 'sampler', None)
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
        loop = runner.train_loop
        world_size = get_world_size()
        epoch, start_iter = meta.get('epoch', 0), meta.get('iter', 0)
        batch_sampler = getattr(loader, 'batch_sampler', None)
        sampler = getattr(batch_sampler, 'sampler', None)
        batch_size = self._batch_size(loader)
        self._resume_skip = 0
        if epoch >= loop.max_epochs:
            return
        if 'epoch_samples' in progress and progress.get('epoch') == epoch:
            done = int(progress['epoch_samples'])
            complete = bool(progress.get('epoch_complete', False))
        elif saved_world == world_size and batch_size:
            # A checkpoint from before 'exact_resume' was saved: the
            # iterations of this world size and batch size.
            done_iters = start_iter - epoch * len(loader)
            done = max(done_iters, 0) * batch_size * world_size
            complete = done_iters >= len(loader)
        else:
            done, complete = 0, False
            runner.logger.warning(
                'ExactResumeHook: the checkpoint does not say how much of '
                f'epoch {epoch + 1} its {saved_world} processes trained; '
                'the resumed epoch starts from its first batch')
        skip = 0
        if done > 0 or complete:
            if sampler is None or batch_size is None:
                runner.logger.warning(
                    'ExactResumeHook: the train dataloader has no batch '
                    'sampler with a .sampler and a batch size; the resumed '
                    'epoch starts from its first batch')
            else:
                skip = self._per_rank_skip(runner, sampler, batch_sampler,
                                           done, complete)
        full_iters = len(loader)
        if skip:
            batch_sampler.sampler = _SkipFirst(sampler, skip)
            try:
                left_iters = len(batch_sampler)
            finally:
                batch_sampler.sampler = sampler
            runner.logger.info(
                f'ExactResumeHook: resuming inside epoch {epoch + 1}: ' + (
                    f'skipping its first {skip // batch_size} iterations '
                    f'({skip} samples per rank)'
                    if saved_world == world_size and skip % batch_size == 0
                    and progress.get('batch_size', batch_size) == batch_size
                    else f'skipping the first {done} samples of its order, '
                    f'which {saved_world} processes had trained ({skip} per '
                    'rank here)'))
        else:
            left_iters = full_iters
        self._resume_skip = skip
        # The checkpoint's iteration counts the saved run's iterations; the
        # loop's max_iters (max_epochs * this run's epoch length) is where
        # this run must end for the last-iteration checkpoint, the ETA and
        # gradient accumulation to be right.
        max_iters = start_iter + left_iters + (loop.max_epochs - epoch -
                                               1) * full_iters
        if getattr(loop, '_max_iters', max_iters) != max_iters:
            runner.logger.info(
                f'ExactResumeHook: this run ends at iteration {max_iters}, '
                f'not {loop.max_iters}: it continues from the checkpoint\'s '
                f'iteration {start_iter} with {left_iters} iterations left '
                f'in epoch {epoch + 1} and {full_iters} in each later epoch')
            loop._max_iters = max_iters

    def _per_rank_skip(self, runner, sampler, batch_sampler, done: int,
                       complete: bool) -> int:
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
        if type(batch_sampler) is not torch.utils.data.BatchSampler:
            runner.logger.warning(
                f'ExactResumeHook: {type(batch_sampler).__name__} may group '
                f'indices (e.g. by aspect ratio); skipping the first {skip} '
                'indices resumes the epoch close to, not exactly at, where '
                'it stopped')
        return skip

    # -- per-iteration seeds ---------------------------------------------
    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        if self.seed_iterations:
            seed_everything(
                derived_seed(_STEP_DOMAIN, runner.seed, get_rank(),
                             runner.iter))

    # -- random states in checkpoints ------------------------------------
    # Only rank 0 runs save_checkpoint, so every rank's states are gathered
    # just before CheckpointHook (lower priority) decides to save.
    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None) -> None:
        if self._position is not None:
            self._position['iters'] = batch_idx + 1
        step = runner.iter + 1
        if any(step % interval == 0 or step == runner.max_iters
               for interval in self._iter_checkpoint_intervals):
            self._gathered_states = all_gather_object(random_states())

    def after_train_epoch(self, runner) -> None:
        if self._skipping_batch_sampler is not None:
            batch_sampler = self._skipping_batch_sampler
            batch_sampler.sampler = batch_sampler.sampler.sampler
            self._skipping_batch_sampler = None
        self._gathered_states = all_gather_object(random_states())

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint['random_states'] = self._gathered_states or [
            random_states()
        ]
        # Where a resume, on any number of processes, continues the epoch
        # (plain integers: a checkpoint is data).
        checkpoint['exact_resume'] = self._epoch_progress(runner, checkpoint)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        if not getattr(runner, '_resume', False):
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
