"""Batches with a fixed number of samples from each source of a dataset."""
import math
from typing import Iterator, List, Optional, Sequence

import torch
from mmengine.dataset import ConcatDataset
from mmengine.dist import get_dist_info, sync_random_seed
from torch.utils.data import Sampler

from mmlt.registry import DATA_SAMPLERS
from ..semi_supervised_dataset import SemiSupervisedDataset
from .resumable_sampler import FirstIndicesSkipping


@DATA_SAMPLERS.register_module()
class MultiSourceSampler(FirstIndicesSkipping, Sampler):
    """Each batch takes ``batch_size * r_s / sum(r)`` samples of source ``s``.

    The convention of MMDetection's ``MultiSourceSampler`` (``batch_size``
    per GPU, ``source_ratio`` over the sources of a ``ConcatDataset``), made
    finite and epoch-based so that it serves epoch loops, resumes exactly and
    needs no MMDetection. For semi-supervised training
    (:class:`mmlt.SemiSupervisedDataset`) ``source_ratio=[1, mu]`` gives B
    labeled and mu * B unlabeled samples per batch (FixMatch: mu = 7; mmlt's
    configs: mu = 2).

    An epoch is one pass over source 0 (the labeled split), or
    ``epoch_length`` batches: every rank gets ``len(source_0) // (W * n_0)``
    batches by default (``n_0`` = its samples per batch,
    ``W`` = world size; the last partial batch is dropped, as FixMatch does).
    Each source's stream for the epoch is a random permutation of it from a
    ``torch.Generator`` seeded with ``seed + epoch``, identical on all ranks
    (a source shorter than the epoch needs is drawn again, permutation after
    permutation); rank ``r`` takes positions ``r, r + W, ...`` of every
    stream, so the ranks hold disjoint shards of each source. The order is a
    function of ``(seed, epoch)`` only: :class:`mmlt.ExactResumeHook` resumes
    inside an epoch by skipping the indices already trained.

    Yielded indices come in whole batches: ``n_0`` of source 0, then ``n_1``
    of source 1, and so on. The dataloader's ``batch_size`` must equal this
    sampler's (:class:`mmlt.SemiSupervisedHook` checks it before training).

    Args:
        dataset (ConcatDataset): The sources, concatenated.
        batch_size (int): Samples per batch and GPU, all sources together.
        source_ratio (Sequence[int | float]): Relative share of each source;
            ``batch_size * r_s / sum(r)`` must be a whole number >= 1.
        shuffle (bool): Permute the sources every epoch; if False, each
            stream is its source in order, repeated. Defaults to True.
        seed (int, optional): Base seed, identical on all ranks. Defaults to
            None (``mmengine.dist.sync_random_seed()``).
        epoch_length (int, optional): Batches per epoch and rank, e.g. 500
            for the "epochs" of 500 iterations of long-tailed semi-supervised
            protocols (DASO, ACR). Defaults to None (one pass over source 0).
    """

    def __init__(self,
                 dataset: ConcatDataset,
                 batch_size: int,
                 source_ratio: Sequence[float],
                 shuffle: bool = True,
                 seed: Optional[int] = None,
                 epoch_length: Optional[int] = None) -> None:
        if not hasattr(dataset, 'cumulative_sizes'):
            raise TypeError(
                f'MultiSourceSampler needs a ConcatDataset of its sources '
                f'(e.g. mmlt.SemiSupervisedDataset), got '
                f'{type(dataset).__name__}')
        if isinstance(batch_size, bool) or int(batch_size) != batch_size or \
                batch_size < 1:
            raise ValueError(
                f'batch_size must be a positive integer, got {batch_size!r}')
        sizes = [len(d) for d in dataset.datasets]
        if len(source_ratio) != len(sizes):
            raise ValueError(
                f'source_ratio has {len(source_ratio)} entries for '
                f'{len(sizes)} sources; give one ratio per source')
        if min(source_ratio) <= 0:
            raise ValueError(
                f'source_ratio must be positive, got {list(source_ratio)}')
        if isinstance(dataset, SemiSupervisedDataset) and \
                source_ratio[1] < source_ratio[0]:
            raise ValueError(
                f'source_ratio={list(source_ratio)} gives mu = '
                f'{source_ratio[1] / source_ratio[0]:g} unlabeled samples per '
                'labeled one; semi-supervised training needs mu >= 1 '
                '(FixMatch: [1, 7]; mmlt configs: [1, 2])')
        total = float(sum(source_ratio))
        per_source = [batch_size * r / total for r in source_ratio]
        if any(abs(n - round(n)) > 1e-9 or round(n) < 1 for n in per_source):
            raise ValueError(
                f'batch_size={batch_size} does not split into whole numbers '
                f'of samples by source_ratio={list(source_ratio)} (got '
                f'{per_source}); use a batch size that is a multiple of '
                f'{_denominator(source_ratio)}')
        self.num_per_source: List[int] = [round(n) for n in per_source]
        if min(sizes) == 0:
            raise ValueError(f'a source is empty (sizes {sizes})')
        rank, world_size = get_dist_info()
        self.rank, self.world_size = rank, world_size
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.source_ratio = list(source_ratio)
        self.sizes = sizes
        self.offsets = [0] + list(dataset.cumulative_sizes[:-1])
        self.shuffle = shuffle
        self.seed = sync_random_seed() if seed is None else int(seed)
        self.epoch = 0
        self.num_batches = sizes[0] // (world_size * self.num_per_source[0])
        if epoch_length is not None:
            if isinstance(epoch_length, bool) or int(
                    epoch_length) != epoch_length or epoch_length < 1:
                raise ValueError(f'epoch_length must be a positive integer, '
                                 f'got {epoch_length!r}')
            self.num_batches = int(epoch_length)
        if self.num_batches == 0:
            raise ValueError(
                f'source 0 has {sizes[0]} samples, fewer than one batch share '
                f'({self.num_per_source[0]}) on each of {world_size} ranks; '
                'lower batch_size')

    def _stream(self, source: int, length: int,
                generator: torch.Generator) -> torch.Tensor:
        """``length`` indices of ``source`` (concatenated passes)."""
        size = self.sizes[source]
        passes = []
        for _ in range(math.ceil(length / size)):
            passes.append(
                torch.randperm(size, generator=generator)
                if self.shuffle else torch.arange(size))
        return torch.cat(passes)[:length] + self.offsets[source]

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator()
        generator.manual_seed(self.seed + self.epoch)
        columns = []
        for source, n in enumerate(self.num_per_source):
            stream = self._stream(source,
                                  self.num_batches * n * self.world_size,
                                  generator)
            shard = stream[self.rank::self.world_size]
            columns.append(shard.view(self.num_batches, n))
        return self._without_skipped(
            iter(torch.cat(columns, dim=1).flatten().tolist()))

    def __len__(self) -> int:
        return self._length_without_skipped(self.num_batches *
                                            self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch (the seed of its order is ``seed + epoch``)."""
        self.epoch = epoch


def _denominator(source_ratio: Sequence[float]) -> int:
    """Smallest batch size that the ratios split into whole numbers."""
    total = sum(source_ratio)
    for batch in range(1, 10000):
        if all(abs(batch * r / total - round(batch * r / total)) < 1e-9
               and round(batch * r / total) >= 1 for r in source_ratio):
            return batch
    return int(total)
