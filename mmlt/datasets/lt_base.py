"""Common pieces of the long-tailed classification datasets.

* :func:`make_lt_counts`: the per-class image counts of an exponential or step
  long-tail profile (Cui et al., CVPR 2019; Cao et al., "LDAM-DRW",
  NeurIPS 2019).
* :func:`make_lt_indices`: which images of a balanced training set make up the
  long-tailed subset (the LDAM-DRW selection with a numpy seed).
* :func:`make_val_indices`: a seeded, class-stratified validation hold-out
  from the training images that the long-tailed subset leaves out.
* :func:`get_dataset_labels`: the label of every index of a dataset, unwrapping
  MMEngine's ``ConcatDataset`` / ``RepeatDataset`` / ``ClassBalancedDataset``
  (:mod:`mmlt.datasets.dataset_wrappers`).
* :func:`make_unlabeled_counts`: the per-class counts of the unlabeled split
  of long-tailed semi-supervised learning (consistent, uniform or reversed
  profile; Kim et al., "DARP", NeurIPS 2020; Oh et al., "DASO", CVPR 2022).
* :class:`LongTailDataset`: an :class:`mmengine.dataset.BaseDataset` with the
  single-label protocol that mmlt's samplers, heads and metrics read:
  ``get_cat_ids(idx) -> [label]``, ``get_gt_labels()`` and ``class_counts``.
"""
from typing import List, Optional, Sequence, Tuple

import numpy as np
from mmengine.dataset import BaseDataset, force_full_init

from .dataset_wrappers import gather_from_leaves, unwrap_dataset
from .seeded_dataset import SeededItems

DATA_PREPARATION_DOC = 'docs/data_preparation.md'


class DatasetFilesNotFoundError(FileNotFoundError):
    """Raised once when a dataset's annotation file, data root or image files
    are missing or unreadable; the message lists what is missing and points to
    ``docs/data_preparation.md``."""


def make_lt_counts(n_max: int,
                   num_classes: int,
                   imb_factor: float,
                   imb_type: str = 'exp',
                   head_fraction: float = 0.5) -> List[int]:
    """Per-class image counts of a long-tail profile, largest class first.

    ``exp`` (Cui et al. 2019, the CIFAR-LT construction of LDAM-DRW):
    ``n_i = int(n_max * (1 / IF) ** (i / (C - 1)))`` for rank ``i = 0..C-1``,
    so the head class has ``n_max`` and the tail class ``n_max / IF`` images.
    ``step`` (Buda et al. 2018): the first ``int(C * head_fraction)`` classes
    have ``n_max`` images, the others ``int(n_max / IF)``.

    Example: ``make_lt_counts(500, 100, 100)`` sums to 10,847 (CIFAR-100-LT),
    ``make_lt_counts(5000, 10, 100)`` to 12,406 (CIFAR-10-LT) and
    ``make_lt_counts(1000, 10, 100)`` is ``[1000, 599, 359, 215, 129, 77, 46,
    27, 16, 10]``.

    Args:
        n_max (int): Number of images of the largest class.
        num_classes (int): Number of classes C.
        imb_factor (float): Imbalance factor IF = n_max / n_min, >= 1.
        imb_type (str): ``'exp'`` or ``'step'``. Defaults to ``'exp'``.
        head_fraction (float): Fraction of classes that keep ``n_max`` images
            in the ``'step'`` profile. Defaults to 0.5.

    Returns:
        list[int]: ``counts[i]`` is the number of images of the class of rank
        ``i`` (rank 0 = the largest class).
    """
    if int(n_max) != n_max or n_max < 1:
        raise ValueError(f'n_max must be a positive integer, got {n_max!r}')
    if int(num_classes) != num_classes or num_classes < 1:
        raise ValueError(
            f'num_classes must be a positive integer, got {num_classes!r}')
    if not imb_factor >= 1:
        raise ValueError(f'imb_factor must be >= 1, got {imb_factor!r}')
    n_max, num_classes = int(n_max), int(num_classes)
    # Written as (1 / IF) ** (i / (C - 1.0)), the exact floating-point form of
    # the LDAM-DRW construction, so that int() truncates identically.
    tail_ratio = 1.0 / imb_factor
    if imb_type == 'exp':
        if num_classes == 1:
            counts = [n_max]
        else:
            counts = [
                int(n_max * tail_ratio**(rank / (num_classes - 1.0)))
                for rank in range(num_classes)
            ]
    elif imb_type == 'step':
        if not 0 <= head_fraction <= 1:
            raise ValueError(
                f'head_fraction must be in [0, 1], got {head_fraction!r}')
        num_head = int(num_classes * head_fraction)
        counts = [n_max] * num_head + [int(n_max * tail_ratio)] * (
            num_classes - num_head)
    else:
        raise ValueError(
            f"imb_type must be 'exp' or 'step', got {imb_type!r}")
    if min(counts) < 1:
        raise ValueError(
            f'n_max={n_max} with imb_factor={imb_factor} leaves a class '
            f'with no images (counts {counts}); use a larger n_max or a '
            'smaller imb_factor')
    return counts


UNLABELED_PROFILES = ('consistent', 'uniform', 'reversed')


def make_unlabeled_counts(m_max: int,
                          num_classes: int,
                          imb_factor: float,
                          profile: str = 'consistent') -> List[int]:
    """Per-class counts of an unlabeled split, by rank of the labeled split.

    Rank ``i`` is the labeled split's ``i``-th largest class.
    ``'consistent'``: the labeled profile's shape, ``int(M1 * (1 / IF) **
    (i / (C - 1)))``; ``'uniform'``: ``M1`` for every class; ``'reversed'``:
    the consistent counts in reverse, so the labeled tail class has ``M1``
    unlabeled images. E.g. ``make_unlabeled_counts(3000, 10, 100,
    'reversed')`` is ``[30, 50, 83, 139, 232, 387, 646, 1078, 1798, 3000]``.

    Args:
        m_max (int): Unlabeled images of the largest unlabeled class (M1).
        num_classes (int): Number of classes C.
        imb_factor (float): Imbalance factor of the unlabeled split.
        profile (str): ``'consistent'``, ``'uniform'`` or ``'reversed'``.

    Returns:
        list[int]: ``counts[i]`` for the labeled class of rank ``i``.
    """
    if profile not in UNLABELED_PROFILES:
        raise ValueError(f'unlabeled profile must be one of '
                         f'{UNLABELED_PROFILES}, got {profile!r}')
    if profile == 'uniform':
        return make_lt_counts(m_max, num_classes, 1)
    counts = make_lt_counts(m_max, num_classes, imb_factor)
    return counts[::-1] if profile == 'reversed' else counts


def check_class_order(class_order: Optional[Sequence[int]],
                      num_classes: int) -> List[int]:
    """Validate a class permutation; ``None`` means label order.

    Args:
        class_order (Sequence[int], optional): ``class_order[r]`` is the label
            that gets the ``r``-th largest count.
        num_classes (int): Number of classes.

    Returns:
        list[int]: The permutation.
    """
    if class_order is None:
        return list(range(num_classes))
    order = [int(c) for c in class_order]
    if sorted(order) != list(range(num_classes)):
        raise ValueError(
            f'class_order must be a permutation of range({num_classes}), '
            f'got {list(class_order)}')
    return order


def make_lt_indices(labels: Sequence[int],
                    counts: Sequence[int],
                    class_order: Optional[Sequence[int]] = None,
                    seed: int = 0,
                    exclude: Optional[np.ndarray] = None) -> np.ndarray:
    """Indices of the long-tailed subset of a (balanced) labelled set.

    The LDAM-DRW selection: with a numpy random state seeded by ``seed``,
    classes are visited in label order; for each class ``c`` the indices of
    its images (in dataset order) are shuffled and the first ``n_c`` kept.
    ``n_c = counts[r]`` where ``class_order[r] == c``. A private
    ``np.random.RandomState(seed)`` draws exactly what ``np.random.seed(seed)``
    followed by ``np.random.shuffle`` draws, without touching global state.

    Args:
        labels (Sequence[int]): Label of every image of the full set.
        counts (Sequence[int]): Counts by rank, e.g. from
            :func:`make_lt_counts`; ``len(counts)`` is the number of classes.
        class_order (Sequence[int], optional): ``class_order[r]`` is the label
            that receives ``counts[r]`` images. Defaults to None (label order:
            class 0 is the largest).
        seed (int): Seed of the selection. Defaults to 0.
        exclude (np.ndarray, optional): Indices that may not be selected (the
            labeled split, when this selects the unlabeled one). Defaults to
            None.

    Returns:
        np.ndarray: Selected indices (int64), grouped by class in label order.
    """
    labels = np.asarray(labels)
    available = np.ones(len(labels), dtype=bool)
    if exclude is not None:
        available[np.asarray(exclude, dtype=np.int64)] = False
    num_classes = len(counts)
    order = check_class_order(class_order, num_classes)
    count_of_label = np.empty(num_classes, dtype=np.int64)
    count_of_label[order] = np.asarray(counts, dtype=np.int64)
    rng = np.random.RandomState(seed)
    selected = []
    for label in range(num_classes):
        class_indices = np.where((labels == label) & available)[0]
        if len(class_indices) < count_of_label[label]:
            left = ' left after the labeled split' if exclude is not None \
                else ''
            raise ValueError(
                f'class {label} has {len(class_indices)} images{left} but '
                f'the long-tail profile asks for {count_of_label[label]}; '
                f'lower {"the unlabeled n_max" if left else "n_max"}')
        rng.shuffle(class_indices)
        selected.append(class_indices[:count_of_label[label]])
    return np.concatenate(selected).astype(np.int64)


def _check_val_counts(n_per_class: int,
                      min_per_class: Optional[int]) -> int:
    """Validate the validation split's sizes; returns ``min_per_class``."""
    if int(n_per_class) != n_per_class or n_per_class < 1:
        raise ValueError(
            f'n_val_per_class must be a positive integer, got {n_per_class!r}')
    min_per_class = n_per_class if min_per_class is None else min_per_class
    if int(min_per_class) != min_per_class or not \
            0 <= min_per_class <= n_per_class:
        raise ValueError(
            f'min_val_per_class={min_per_class!r} must be an integer in [0, '
            f'n_val_per_class={n_per_class}]')
    return int(min_per_class)


def make_val_indices(labels: Sequence[int],
                     num_classes: int,
                     n_per_class: int,
                     exclude: np.ndarray,
                     seed: int = 0,
                     min_per_class: Optional[int] = None) -> np.ndarray:
    """Indices of a seeded, class-stratified hold-out of a labelled set.

    The validation split of a long-tailed subset of a balanced set: for each
    class in label order, the indices of its images that ``exclude`` does
    not hold (the long-tailed training subset, and the unlabeled split in
    semi-supervised learning) are shuffled with a numpy random state seeded
    by ``seed`` and the first ``n_per_class`` kept (all of them when fewer
    are left, as long as at least ``min_per_class`` are).

    Args:
        labels (Sequence[int]): Label of every image of the full set.
        num_classes (int): Number of classes.
        n_per_class (int): Images per class to hold out.
        exclude (np.ndarray): Indices that may not be held out.
        seed (int): Seed of the draw. Defaults to 0.
        min_per_class (int, optional): Fewest images a class may end up with.
            Defaults to None (``n_per_class``: every class gets exactly
            ``n_per_class``).

    Returns:
        np.ndarray: Held-out indices (int64), grouped by class in label order.
    """
    min_per_class = _check_val_counts(n_per_class, min_per_class)
    labels = np.asarray(labels)
    available = np.ones(len(labels), dtype=bool)
    available[np.asarray(exclude, dtype=np.int64)] = False
    rng = np.random.RandomState(seed)
    held_out = []
    for label in range(num_classes):
        class_indices = np.where((labels == label) & available)[0]
        if len(class_indices) < min_per_class:
            raise ValueError(
                f'class {label} has {len(class_indices)} training images '
                f'outside the long-tailed subset, fewer than the '
                f'{min_per_class} the validation split needs; lower '
                'n_val_per_class, or set min_val_per_class=0 to let a '
                'class the long-tailed subset uses up (the head class of '
                'CIFAR-LT at n_max 5000 / 500) have fewer or none')
        rng.shuffle(class_indices)
        held_out.append(class_indices[:n_per_class])
    return np.concatenate(held_out).astype(np.int64)


def get_dataset_labels(dataset) -> np.ndarray:
    """The single label of every index of ``dataset``.

    Unwraps MMEngine's ``ConcatDataset`` (concatenation), ``RepeatDataset``
    (index ``i`` -> ``i % len(inner)``), ``ClassBalancedDataset`` (index ``i``
    -> ``repeat_indices[i]``) and torch's ``Subset``; reads ``get_gt_labels()``
    when the dataset has it, and falls back to ``get_cat_ids(idx)`` per index.

    Args:
        dataset: A dataset with ``get_gt_labels`` or ``get_cat_ids``, possibly
            wrapped.

    Returns:
        np.ndarray: Labels (int64), shape ``(len(dataset),)``.
    """
    return gather_from_leaves(dataset, _leaf_labels, np.zeros(0, np.int64))


def _leaf_labels(dataset) -> np.ndarray:
    """The single label of every index of a dataset that wraps nothing."""
    if hasattr(dataset, 'get_gt_labels'):
        labels = np.asarray(dataset.get_gt_labels())
        if labels.ndim == 1 and len(labels) == len(dataset):
            return labels.astype(np.int64)
    if not hasattr(dataset, 'get_cat_ids'):
        raise ValueError(
            f'{type(dataset).__name__} has neither get_gt_labels() nor '
            'get_cat_ids(idx); class-aware sampling needs one label per index')
    labels = np.empty(len(dataset), dtype=np.int64)
    for idx in range(len(dataset)):
        cat_ids = list(dataset.get_cat_ids(idx))
        if len(cat_ids) != 1:
            raise ValueError(
                f'{type(dataset).__name__}.get_cat_ids({idx}) returned '
                f'{cat_ids}; expected exactly one label per image')
        labels[idx] = int(cat_ids[0])
    return labels


def class_counts(dataset, num_classes: Optional[int] = None) -> np.ndarray:
    """Per-class training counts of a (possibly wrapped) dataset: the one
    helper of ClassCountsHook and LongTailAccuracy.

    Uses the dataset's ``class_counts`` when it has one (mmlt's LT datasets),
    otherwise counts ``get_cat_ids`` over the whole dataset (an image with
    several categories counts once for each, as for LVIS image counts).
    Wrappers count their leaf datasets once: repeating a dataset does not
    change its class prior.

    Args:
        dataset: a dataset with ``class_counts`` or ``get_cat_ids``.
        num_classes (int, optional): the expected number of classes.

    Returns:
        np.ndarray: int64 counts of length ``num_classes``.
    """
    total = None
    # A wrapper that knows its prior (mmlt.SemiSupervisedDataset: the labeled
    # split's) answers for itself.
    leaves = [dataset] if hasattr(dataset, 'class_counts') else \
        unwrap_dataset(dataset)
    for leaf in leaves:
        if hasattr(leaf, 'class_counts') and leaf.class_counts is not None:
            counts = np.asarray(leaf.class_counts, dtype=np.int64)
        elif hasattr(leaf, 'get_cat_ids'):
            metainfo = getattr(leaf, 'metainfo', None) or {}
            size = len(metainfo.get('classes', ()) or ()) or num_classes or 0
            counts = np.zeros(size, dtype=np.int64)
            for idx in range(len(leaf)):
                for cat in leaf.get_cat_ids(idx):
                    if cat >= counts.size:
                        counts = np.pad(counts, (0, cat + 1 - counts.size))
                    counts[cat] += 1
        else:
            raise TypeError(
                f'{type(leaf).__name__} has neither `class_counts` nor '
                '`get_cat_ids`, so its class prior is unknown; give the '
                'counts to the loss/metric in the config '
                '(class_counts=[...]).')
        if total is None:
            total = counts
        else:
            size = max(total.size, counts.size)
            total = np.pad(total, (0, size - total.size)) + np.pad(
                counts, (0, size - counts.size))
    if num_classes is not None and total.size != num_classes:
        raise ValueError(
            f'the training set has {total.size} classes but the model expects '
            f'{num_classes}; check num_classes in the config')
    return total


class LongTailDataset(SeededItems, BaseDataset):
    """Base of mmlt's single-label classification datasets.

    Subclasses implement ``load_data_list`` returning dicts with ``gt_label``
    (int) and either ``img`` (in-memory uint8 array, HxW or HxWx3) or
    ``img_path``; ``metainfo['classes']`` names the classes. This base adds
    the protocol that mmlt's samplers, heads and :class:`LongTailAccuracy`
    read, and which MMPretrain's ``BaseDataset`` also offers:

    * ``get_cat_ids(idx)`` -> ``[label]``;
    * ``get_gt_labels()`` -> ``np.ndarray`` of all labels;
    * ``class_counts`` -> ``np.ndarray`` of per-class counts of this split
      (length ``num_classes``; the training counts on a training split).

    Items are seeded from ``(seed, epoch, index)`` under
    :class:`mmlt.ExactResumeHook` (:class:`SeededItems`).

    Labels are read from the data list once and cached.
    """

    _gt_labels_cache: Optional[np.ndarray] = None

    @property
    def num_classes(self) -> int:
        """int: Number of classes, ``len(metainfo['classes'])``."""
        return len(self._metainfo['classes'])

    @force_full_init
    def get_gt_labels(self) -> np.ndarray:
        """All ground-truth labels.

        Returns:
            np.ndarray: Labels (int64), shape ``(len(self),)``.
        """
        return self._cached_labels().copy()

    @force_full_init
    def get_cat_ids(self, idx: int) -> List[int]:
        """The label of one image, as MMEngine's dataset wrappers expect.

        Args:
            idx (int): Index of the image.

        Returns:
            list[int]: ``[label]``.
        """
        return [int(self._cached_labels()[idx])]

    @property
    def class_counts(self) -> np.ndarray:
        """np.ndarray: Number of images of each class in this split (int64,
        length ``num_classes``)."""
        return np.bincount(
            self.get_gt_labels(), minlength=self.num_classes).astype(np.int64)

    def _cached_labels(self) -> np.ndarray:
        # Wrappers such as ClassBalancedDataset call get_cat_ids for every
        # index: read all labels once instead of deserialising per call.
        if self._gt_labels_cache is None:
            self._gt_labels_cache = np.array(
                [self._raw_label(i) for i in range(len(self))],
                dtype=np.int64)
        return self._gt_labels_cache

    def _raw_label(self, idx: int) -> int:
        # get_data_info deserialises one entry; it is only read for labels
        # once, then the cache answers.
        return int(self.get_data_info(idx)['gt_label'])

    def get_subset_(self, indices) -> None:
        """See :meth:`mmengine.dataset.BaseDataset.get_subset_`; also drops
        the cached labels."""
        super().get_subset_(indices)
        self._gt_labels_cache = None

    def get_subset(self, indices) -> 'LongTailDataset':
        """See :meth:`mmengine.dataset.BaseDataset.get_subset`; the subset
        recomputes its labels."""
        subset = super().get_subset(indices)
        subset._gt_labels_cache = None
        return subset

    def _check_labels(self, labels: np.ndarray, source: str) -> None:
        """Raise ValueError if a label is outside ``[0, num_classes)``."""
        if len(labels) == 0:
            return
        if labels.min() < 0 or labels.max() >= self.num_classes:
            bad = labels[(labels < 0) | (labels >= self.num_classes)]
            raise ValueError(
                f'{type(self).__name__}: labels in {source} must lie in '
                f'[0, {self.num_classes}) ({self.num_classes} classes), found '
                f'{sorted(set(bad.tolist()))[:5]} (min {labels.min()}, max '
                f'{labels.max()})')


class LongTailArrayDataset(LongTailDataset):
    """Base of the datasets read from array files (CIFAR, Fashion-MNIST).

    A subclass reads a whole split with :meth:`read_split`; this base keeps
    the long-tailed subset of the training split (``n_i = int(n_max *
    (1 / IF) ** (i / (C - 1)))`` images of the class of rank ``i``,
    :func:`make_lt_counts`, chosen with a numpy random state seeded by
    ``seed``, :func:`make_lt_indices`: LDAM-DRW's construction) and the
    whole balanced test split.

    Args:
        data_root (str): Where the subclass finds its files.
        split (str): ``'train'`` (long-tailed), ``'val'`` (a held-out
            validation split, below) or ``'test'`` (balanced). Defaults to
            ``'train'``.
        n_max (int, optional): Images of the largest class. Defaults to
            None: the subclass's ``DEFAULT_N_MAX``.
        imb_factor (float): Imbalance factor n_max / n_min. Defaults to 100.
        imb_type (str): ``'exp'`` or ``'step'``. Defaults to ``'exp'``.
        class_order (Sequence[int], optional): ``class_order[r]`` is the label
            with the ``r``-th largest count. Defaults to None (label order).
        seed (int): Seed of the image selection. Defaults to 0.
        unlabeled (dict, optional): Make this the unlabeled split of
            long-tailed semi-supervised learning instead: images of the
            training split that the labeled split above (``n_max``,
            ``imb_factor``, ``imb_type``, ``class_order``, ``seed``) leaves
            out, ``dict(n_max=M1, imb_factor=IF_u, profile=..., seed=...)``
            (:func:`make_unlabeled_counts`; ``imb_factor`` and ``seed``
            default to the labeled split's, ``profile`` to
            ``'consistent'``). Entries then hold ``true_label`` instead of
            ``gt_label``: the labels are kept for reporting only
            (pseudo-label accuracy) and never reach a loss. With
            ``split='val'``: the validation split of that semi-supervised
            setting, disjoint from its unlabeled split too. Defaults to None.
        n_val_per_class (int): ``split='val'``: images per class held out
            from the training images that the long-tailed subset above
            (and ``unlabeled``) leaves out, drawn by
            :func:`make_val_indices`, so the split is disjoint from the
            training subset and from the test set, and balanced. Defaults to
            20 (ImageNet-LT's validation split has 20 per class).
        min_val_per_class (int, optional): ``split='val'``: fewest images a
            class may get when fewer than ``n_val_per_class`` are left (the
            head class of CIFAR-LT at the full ``n_max`` has none left: set
            0 there, the split then covers the other classes). Defaults to
            None (``n_val_per_class``: fewer is an error).
        val_seed (int): ``split='val'``: seed of the hold-out draw. Defaults
            to 0.
        **kwargs: Other arguments of :class:`mmengine.dataset.BaseDataset`;
            ``test_mode`` defaults to ``split != 'train'``.

    Attributes:
        source_indices (np.ndarray): Index of every entry in the full split
            as read from disk (the training files for ``'val'``; set when the
            data list is loaded), so that a labeled, an unlabeled and a
            validation split can be checked for overlap.
    """

    SPLITS = ('train', 'val', 'test')
    #: Images of the largest class when ``n_max`` is None.
    DEFAULT_N_MAX: int = 0

    def __init__(self,
                 data_root: str,
                 split: str = 'train',
                 n_max: Optional[int] = None,
                 imb_factor: float = 100,
                 imb_type: str = 'exp',
                 class_order: Optional[Sequence[int]] = None,
                 seed: int = 0,
                 unlabeled: Optional[dict] = None,
                 n_val_per_class: int = 20,
                 min_val_per_class: Optional[int] = None,
                 val_seed: int = 0,
                 **kwargs):
        if split not in self.SPLITS:
            raise ValueError(
                f'split must be one of {self.SPLITS}, got {split!r}')
        self.split = split
        self.n_max = self.DEFAULT_N_MAX if n_max is None else n_max
        self.imb_factor = imb_factor
        self.imb_type = imb_type
        self.class_order = class_order
        self.seed = seed
        num_classes = len(self.METAINFO['classes'])
        # Validate the profile before any file is read.
        self.lt_counts = make_lt_counts(self.n_max, num_classes, imb_factor,
                                        imb_type)
        self.unlabeled = None
        self.unlabeled_counts = None
        if unlabeled is not None:
            if split == 'test':
                raise ValueError(
                    "unlabeled=... selects from the training split; set "
                    "split='train' (or 'val' for its validation split)")
            self.unlabeled = self._unlabeled_settings(unlabeled)
            self.unlabeled_counts = make_unlabeled_counts(
                self.unlabeled['n_max'], num_classes,
                self.unlabeled['imb_factor'], self.unlabeled['profile'])
        self.val_settings = dict(
            n_per_class=n_val_per_class, min_per_class=min_val_per_class,
            seed=val_seed)
        _check_val_counts(n_val_per_class, min_val_per_class)
        self.source_indices = None
        kwargs.setdefault('test_mode', split != 'train')
        super().__init__(ann_file='', data_root=data_root, **kwargs)

    def _unlabeled_settings(self, unlabeled: dict) -> dict:
        """``unlabeled`` with the labeled split's defaults filled in."""
        unknown = set(unlabeled) - {'n_max', 'imb_factor', 'profile', 'seed'}
        if unknown or 'n_max' not in unlabeled:
            raise ValueError(
                f'unlabeled must be dict(n_max=M1, imb_factor=..., '
                f'profile=..., seed=...) with n_max given; got {unlabeled}')
        return dict(
            dict(imb_factor=self.imb_factor, profile='consistent',
                 seed=self.seed), **unlabeled)

    @property
    def is_unlabeled(self) -> bool:
        """bool: Whether this is the unlabeled split of semi-supervised
        learning (its labels are kept aside)."""
        return self.unlabeled is not None and self.split == 'train'

    def read_split(self, split: str) -> Tuple[np.ndarray, np.ndarray]:
        """Images ``(N, ...)`` uint8 and labels ``(N,)`` int64 of the files
        of ``split`` (``'train'`` or ``'test'``), read from
        ``self.data_root``."""
        raise NotImplementedError

    def load_data_list(self) -> List[dict]:
        """The long-tailed (train), held-out (val) or full (test) split.

        Returns:
            list[dict]: ``{'img': uint8 array, 'gt_label': int}`` per image.
        """
        images, labels = self.read_split(
            'test' if self.split == 'test' else 'train')
        self._check_labels(labels, self.data_root)
        if self.split == 'test':
            keep = np.arange(len(labels))
        else:
            keep = self._training_subsets(labels)
        self.source_indices = keep
        label_key = 'true_label' if self.is_unlabeled else 'gt_label'
        return [dict(img=images[i], **{label_key: int(labels[i])})
                for i in keep]

    def _training_subsets(self, labels: np.ndarray) -> np.ndarray:
        """Indices of this split among the training files: the labeled
        long-tailed subset, the unlabeled split, or the validation split
        disjoint from both."""
        keep = make_lt_indices(labels, self.lt_counts, self.class_order,
                               self.seed)
        if self.unlabeled is not None:
            unlabeled = make_lt_indices(labels, self.unlabeled_counts,
                                        self.class_order,
                                        self.unlabeled['seed'], exclude=keep)
            if self.split == 'train':
                return unlabeled
            keep = np.concatenate([keep, unlabeled])
        if self.split == 'train':
            return keep
        return make_val_indices(labels, self.num_classes,
                                exclude=keep, **self.val_settings)

    def _raw_label(self, idx: int) -> int:
        if self.is_unlabeled:
            raise ValueError(
                f'{type(self).__name__} is an unlabeled split: its labels are '
                'hidden from training (get_true_labels() reads them for '
                'reporting); the class prior comes from the labeled split '
                '(mmlt.SemiSupervisedDataset.class_counts)')
        # BaseDataset's entry, without a subclass's image conversion.
        return int(BaseDataset.get_data_info(self, idx)['gt_label'])

    @force_full_init
    def get_true_labels(self) -> np.ndarray:
        """The kept-aside labels of an unlabeled split (reporting only)."""
        key = 'true_label' if self.is_unlabeled else 'gt_label'
        return np.array([
            int(BaseDataset.get_data_info(self, i)[key])
            for i in range(len(self))
        ], dtype=np.int64)


__all__ = [
    'DatasetFilesNotFoundError', 'make_lt_counts', 'make_lt_indices',
    'make_val_indices', 'make_unlabeled_counts', 'UNLABELED_PROFILES',
    'check_class_order', 'get_dataset_labels', 'LongTailDataset',
    'LongTailArrayDataset', 'class_counts', 'unwrap_dataset',
    'DATA_PREPARATION_DOC'
]
