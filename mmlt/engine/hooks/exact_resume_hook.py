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
- checkpoints also carry every rank's Python, NumPy, torch and CUDA states,
  restored on resume (for what runs between resume and the first iteration);
- a run resumed from a mid-epoch checkpoint skips the indices its epoch had
  already used, so no sample is repeated or skipped.

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
    """This process's generator states (about 12 KB pickled, + 16 B per
    CUDA device)."""
    states = dict(
        python=random.getstate(),
        numpy=np.random.get_state(),
        torch=torch.get_rng_state())
    if torch.cuda.is_available():
        states['cuda'] = torch.cuda.get_rng_state_all()
    return states


def set_random_states(states: dict) -> None:
    """Restore what :func:`random_states` returned."""
    random.setstate(states['python'])
    np.random.set_state(states['numpy'])
    torch.set_rng_state(states['torch'])
    if 'cuda' in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states['cuda'])


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
        done = runner.iter - runner.epoch * len(loader)
        if done > 0:
            self._skip_trained_part(runner, loader, done)

    # -- mid-epoch resume ------------------------------------------------
    def _skip_trained_part(self, runner, loader, done_iters: int) -> None:
        batch_sampler = getattr(loader, 'batch_sampler', None)
        if batch_sampler is None or not hasattr(batch_sampler, 'sampler'):
            runner.logger.warning(
                'ExactResumeHook: the train dataloader has no batch sampler '
                'with a .sampler; the resumed epoch starts from its first '
                'batch')
            return
        batch_size = getattr(batch_sampler, 'batch_size', None)
        if batch_size is None:
            runner.logger.warning(
                'ExactResumeHook: cannot tell the batch size of '
                f'{type(batch_sampler).__name__}; the resumed epoch starts '
                'from its first batch')
            return
        if type(batch_sampler) is not torch.utils.data.BatchSampler:
            runner.logger.warning(
                f'ExactResumeHook: {type(batch_sampler).__name__} may group '
                'indices (e.g. by aspect ratio); skipping the first '
                f'{done_iters * batch_size} indices resumes the epoch close '
                'to, not exactly at, where it stopped')
        batch_sampler.sampler = _SkipFirst(batch_sampler.sampler,
                                           done_iters * batch_size)
        self._skipping_batch_sampler = batch_sampler
        runner.logger.info(
            f'ExactResumeHook: resuming inside epoch {runner.epoch + 1}: '
            f'skipping its first {done_iters} iterations '
            f'({done_iters * batch_size} samples per rank)')

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

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        states = checkpoint.get('random_states')
        if not getattr(runner, '_resume', False) or states is None:
            return
        if len(states) != get_world_size():
            runner.logger.warning(
                f'ExactResumeHook: the checkpoint holds the random states of '
                f'{len(states)} ranks and this run has {get_world_size()}; '
                'they are not restored (seeds still follow the position)')
            return
        set_random_states(states[get_rank()])
