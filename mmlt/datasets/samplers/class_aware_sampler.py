"""Class-rebalancing samplers: class-aware, square-root and progressively
balanced sampling.

Every sampler here draws an epoch as: pick a class ``c`` with probability
``p_c``, then an image of that class uniformly at random (with replacement).
They differ only in ``p_c`` (n_c = training images of class c, C = number of
classes with at least one image, N = sum of n_c):

* :class:`ClassAwareSampler` (Shen et al., "Relay Backpropagation", ECCV
  2016; Kang et al., "Decoupling Representation and Classifier", ICLR 2020):
  ``p_c = 1 / C``.
* :class:`SquareRootSampler` (Mahajan et al., ECCV 2018; Kang et al. 2020):
  ``p_c = n_c^q / sum_k n_k^q``, ``q = 1/2`` by default. ``q = 0`` is
  class-balanced and ``q = 1`` instance-balanced sampling.
* :class:`ProgressivelyBalancedSampler` (Kang et al. 2020):
  ``p_c(t) = (1 - t / T) n_c / N + (t / T) / C`` at epoch ``t`` of ``T``.

Like MMEngine's ``DefaultSampler``, the whole epoch is drawn identically on
every rank from a ``torch.Generator`` seeded with ``seed + epoch``, and rank
``r`` of ``W`` takes positions ``r, r + W, r + 2W, ...`` of it.
"""
import math
from typing import Iterator, List, Optional, Sized

import numpy as np
import torch
from mmengine.dist import get_dist_info, sync_random_seed
from torch.utils.data import Sampler

from mmlt.registry import DATA_SAMPLERS
from ..lt_base import get_dataset_labels
from .resumable_sampler import FirstIndicesSkipping


class ClassWeightedSampler(FirstIndicesSkipping, Sampler):
    """Base: draw a class from :meth:`class_probabilities`, then an image of
    that class uniformly.

    ``num_samples_cls`` consecutive images of the same class are drawn per
    class pick (Shen et al. 2016 sample several images per class pick; Kang et
    al. 2020 use ``num_samples_cls=4`` with class-aware sampling on
    ImageNet-LT). Each rank takes whole groups (group ``g`` goes to rank
    ``g mod W``), so the same-class runs survive sharding; with
    ``num_samples_cls=1`` this is exactly ``DefaultSampler``'s strided
    sharding.

    Args:
        dataset (Sized): A dataset with ``get_gt_labels()`` or
            ``get_cat_ids(idx)`` (one label per image), possibly wrapped in
            MMEngine's ``ConcatDataset``, ``RepeatDataset`` or
            ``ClassBalancedDataset``; drawn indices index the wrapper.
        shuffle (bool): If True the draw changes every epoch (generator seed
            ``seed + epoch``); if False every epoch repeats the draw of
            generator seed ``seed`` (the class probabilities still follow
            the epoch). Defaults to True.
        seed (int, optional): Base seed, identical on all ranks. Defaults to
            None (``mmengine.dist.sync_random_seed()``).
        round_up (bool): As in ``DefaultSampler``: every rank yields
            ``ceil(epoch_length / W)`` indices; if False rank ``r`` yields
            ``ceil((epoch_length - r) / W)`` and the ranks together exactly
            ``epoch_length``. Defaults to True.
        num_samples_cls (int): Consecutive images drawn per class pick.
            Defaults to 1.
        epoch_length (int, optional): Number of indices drawn per epoch over
            all ranks. Defaults to None (``len(dataset)``).
    """

    def __init__(self,
                 dataset: Sized,
                 shuffle: bool = True,
                 seed: Optional[int] = None,
                 round_up: bool = True,
                 num_samples_cls: int = 1,
                 epoch_length: Optional[int] = None) -> None:
        rank, world_size = get_dist_info()
        self.rank = rank
        self.world_size = world_size
        self.dataset = dataset
        self.shuffle = shuffle
        if seed is None:
            seed = sync_random_seed()
        self.seed = seed
        self.epoch = 0
        self.round_up = round_up
        if int(num_samples_cls) != num_samples_cls or num_samples_cls < 1:
            raise ValueError('num_samples_cls must be a positive integer, '
                             f'got {num_samples_cls!r}')
        self.num_samples_cls = int(num_samples_cls)

        labels = get_dataset_labels(dataset)
        if len(labels) == 0:
            raise ValueError(f'{type(self).__name__} got an empty dataset')
        if labels.min() < 0:
            raise ValueError(f'{type(self).__name__}: labels must be >= 0, '
                             f'found {labels.min()}')
        num_classes = int(labels.max()) + 1
        classes = getattr(dataset, 'metainfo', {}).get('classes', None)
        if classes is not None:
            num_classes = max(num_classes, len(classes))
        #: Images per class (int64 tensor of length num_classes).
        self.class_counts = torch.from_numpy(
            np.bincount(labels, minlength=num_classes).astype(np.int64))
        # Indices sorted by class: class c owns the slice
        # [class_starts[c], class_starts[c] + class_counts[c]).
        self._indices_by_class = torch.from_numpy(
            np.argsort(labels, kind='stable').astype(np.int64))
        self._class_starts = torch.cumsum(self.class_counts, 0) \
            - self.class_counts

        if epoch_length is None:
            epoch_length = len(labels)
        if int(epoch_length) != epoch_length or epoch_length < 1:
            raise ValueError('epoch_length must be a positive integer, got '
                             f'{epoch_length!r}')
        self.epoch_length = int(epoch_length)
        if self.round_up:
            self.num_samples = math.ceil(self.epoch_length / world_size)
            self.total_size = self.num_samples * world_size
        else:
            self.num_samples = math.ceil(
                (self.epoch_length - rank) / world_size)
            self.total_size = self.epoch_length

    @property
    def num_classes(self) -> int:
        """int: Number of classes (classes without images included)."""
        return len(self.class_counts)

    def class_probabilities(self) -> torch.Tensor:
        """Probability of drawing each class at the current epoch.

        Returns:
            torch.Tensor: float64, shape ``(num_classes,)``, sums to 1 and is
            zero for classes without images.
        """
        raise NotImplementedError

    def _balanced_probabilities(self) -> torch.Tensor:
        present = (self.class_counts > 0).double()
        return present / present.sum()

    def _instance_probabilities(self) -> torch.Tensor:
        counts = self.class_counts.double()
        return counts / counts.sum()

    def expected_draws(self) -> torch.Tensor:
        """Expected draws of each dataset index in the current epoch,
        ``epoch_length * p_c / n_c`` for an index of class ``c`` (float64,
        ``(len(dataset),)``): the stream behind
        :func:`mmlt.datasets.stream_counts.stream_class_counts`."""
        probabilities = self.class_probabilities()
        counts = self.class_counts.double()
        per_index = torch.where(counts > 0,
                                probabilities / counts.clamp(min=1), 0.)
        classes = torch.repeat_interleave(
            torch.arange(self.num_classes), self.class_counts)
        draws = torch.zeros(self._indices_by_class.numel(),
                            dtype=torch.float64)
        draws[self._indices_by_class] = per_index[classes]
        return self.epoch_length * draws

    def draw_epoch(self) -> torch.Tensor:
        """The full, rank-independent sequence of drawn indices for the
        current epoch, grouped for sharding.

        Returns:
            torch.Tensor: int64, shape ``(num_groups, num_samples_cls)``;
            group ``g`` belongs to rank ``g mod world_size``.
        """
        generator = torch.Generator()
        generator.manual_seed(self.seed +
                              self.epoch if self.shuffle else self.seed)
        probabilities = self.class_probabilities()
        groups_per_rank = math.ceil(
            math.ceil(self.epoch_length / self.world_size) /
            self.num_samples_cls)
        num_groups = groups_per_rank * self.world_size
        group_classes = torch.multinomial(
            probabilities, num_groups, replacement=True, generator=generator)
        classes = group_classes.repeat_interleave(self.num_samples_cls)
        # float64 uniforms keep floor(u * n_c) unbiased for large classes.
        uniforms = torch.rand(
            len(classes), generator=generator, dtype=torch.float64)
        counts = self.class_counts[classes]
        offsets = torch.minimum((uniforms * counts).long(), counts - 1)
        indices = self._indices_by_class[self._class_starts[classes] + offsets]
        return indices.view(num_groups, self.num_samples_cls)

    def __iter__(self) -> Iterator[int]:
        """Iterate this rank's indices of the current epoch."""
        groups = self.draw_epoch()
        mine = groups[self.rank::self.world_size].reshape(-1)
        return self._without_skipped(iter(mine[:self.num_samples].tolist()))

    def __len__(self) -> int:
        """Number of indices this rank yields per epoch."""
        return self._length_without_skipped(self.num_samples)

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch: it seeds the draw (``seed + epoch``) and, for
        :class:`ProgressivelyBalancedSampler`, moves the class probabilities.

        Args:
            epoch (int): Epoch number, from 0.
        """
        self.epoch = epoch


@DATA_SAMPLERS.register_module()
class ClassAwareSampler(ClassWeightedSampler):
    """Class-aware (class-balanced) sampling: every class with images is
    drawn with probability ``1 / C``, then one of its images uniformly.

    Shen et al., "Relay Backpropagation for Effective Learning of Deep
    Convolutional Neural Networks", ECCV 2016; Kang et al., "Decoupling
    Representation and Classifier for Long-Tailed Recognition", ICLR 2020.

    Args:
        See :class:`ClassWeightedSampler`.
    """

    def class_probabilities(self) -> torch.Tensor:
        """``1 / C`` for each class with images, 0 otherwise."""
        return self._balanced_probabilities()


@DATA_SAMPLERS.register_module()
class SquareRootSampler(ClassWeightedSampler):
    """Power-law class sampling: ``p_c = n_c^q / sum_k n_k^q``.

    ``q = 1/2`` is square-root sampling (Mahajan et al., "Exploring the Limits
    of Weakly Supervised Pretraining", ECCV 2018; Kang et al., ICLR 2020);
    ``q = 0`` is class-balanced, ``q = 1`` instance-balanced sampling.

    Args:
        dataset (Sized): See :class:`ClassWeightedSampler`.
        power (float): Exponent ``q >= 0``. Defaults to 0.5.
        **kwargs: ``shuffle``, ``seed``, ``round_up``, ``num_samples_cls``,
            ``epoch_length`` of :class:`ClassWeightedSampler`.
    """

    def __init__(self, dataset: Sized, power: float = 0.5, **kwargs) -> None:
        if not power >= 0:
            raise ValueError(f'power must be >= 0, got {power!r}')
        self.power = float(power)
        super().__init__(dataset, **kwargs)

    def class_probabilities(self) -> torch.Tensor:
        """``n_c^q`` normalised, 0 for classes without images."""
        counts = self.class_counts.double()
        weights = torch.where(counts > 0, counts.pow(self.power),
                              torch.zeros_like(counts))
        return weights / weights.sum()


@DATA_SAMPLERS.register_module()
class ProgressivelyBalancedSampler(ClassWeightedSampler):
    """Progressively-balanced sampling (Kang et al., "Decoupling
    Representation and Classifier for Long-Tailed Recognition", ICLR 2020).

    At epoch ``t`` (set by :meth:`set_epoch`, from 0) of ``T = total_epochs``:
    ``p_c(t) = (1 - t / T) * n_c / N + (t / T) / C``, i.e. instance-balanced
    at the start and moving linearly towards class-balanced; ``t / T`` is
    clipped to 1 after the last epoch.

    Args:
        dataset (Sized): See :class:`ClassWeightedSampler`.
        total_epochs (int): ``T``, normally the ``max_epochs`` of the
            training loop.
        **kwargs: ``shuffle``, ``seed``, ``round_up``, ``num_samples_cls``,
            ``epoch_length`` of :class:`ClassWeightedSampler`.
    """

    def __init__(self, dataset: Sized, total_epochs: int, **kwargs) -> None:
        if int(total_epochs) != total_epochs or total_epochs < 1:
            raise ValueError('total_epochs must be a positive integer, got '
                             f'{total_epochs!r}')
        self.total_epochs = int(total_epochs)
        super().__init__(dataset, **kwargs)

    def class_probabilities(self) -> torch.Tensor:
        """The instance/class-balanced mixture at the current epoch."""
        progress = min(self.epoch / self.total_epochs, 1.0)
        return ((1.0 - progress) * self._instance_probabilities() +
                progress * self._balanced_probabilities())


__all__: List[str] = [
    'ClassWeightedSampler', 'ClassAwareSampler', 'SquareRootSampler',
    'ProgressivelyBalancedSampler'
]
