"""Labeled and unlabeled training splits in one dataset (semi-supervised)."""
from typing import Union

import numpy as np
from mmengine.dataset import BaseDataset, ConcatDataset

from mmlt.registry import DATASETS
from .lt_base import class_counts
from .seeded_dataset import SeededItems


@DATASETS.register_module()
class SemiSupervisedDataset(SeededItems, ConcatDataset):
    """The labeled split followed by the unlabeled split.

    MMEngine's ``ConcatDataset`` of ``[labeled, unlabeled]``: indices
    ``[0, L)`` are labeled samples, ``[L, L + U)`` unlabeled ones, as
    :class:`mmlt.MultiSourceSampler` with ``source_ratio=[1, mu]`` expects
    (B labeled and mu * B unlabeled samples per batch, FixMatch's layout;
    Sohn et al., NeurIPS 2020). Unlabeled entries carry ``true_label``
    instead of ``gt_label`` (see ``unlabeled=`` of mmlt's LT datasets):
    kept for reporting the pseudo-label accuracy, never trained on.

    The class prior of the run (:class:`mmlt.ClassCountsHook`, logit
    adjustment, ProCo) is the labeled split's, :attr:`class_counts`.

    Args:
        labeled (dict | BaseDataset): The labeled split.
        unlabeled (dict | BaseDataset): The unlabeled split, built with the
            labeled split's ``n_max``, ``imb_factor``, ``imb_type``,
            ``class_order`` and ``seed`` so that it draws from the images
            the labeled split leaves out.
        lazy_init (bool): As in ``ConcatDataset``. Defaults to False.

    Raises:
        ValueError: On full initialisation, if the splits share an image
            (same ``source_indices``), if the labeled split has no labels or
            the unlabeled split has ``gt_label``, or if a split is empty.
    """

    def __init__(self,
                 labeled: Union[dict, BaseDataset],
                 unlabeled: Union[dict, BaseDataset],
                 lazy_init: bool = False) -> None:
        super().__init__(datasets=[labeled, unlabeled], lazy_init=lazy_init)

    @property
    def labeled(self) -> BaseDataset:
        return self.datasets[0]

    @property
    def unlabeled(self) -> BaseDataset:
        return self.datasets[1]

    @property
    def class_counts(self) -> np.ndarray:
        """np.ndarray: Per-class counts of the labeled split."""
        return class_counts(self.labeled)

    def full_init(self) -> None:
        if self._fully_initialized:
            return
        super().full_init()
        self._check_splits()

    def _check_splits(self) -> None:
        labeled, unlabeled = self.datasets
        for name, split in (('labeled', labeled), ('unlabeled', unlabeled)):
            if len(split) == 0:
                raise ValueError(f'the {name} split is empty')
        if getattr(labeled, 'unlabeled', None) is not None:
            raise ValueError(
                'the labeled split was built with unlabeled=...; give it the '
                'LT dataset without unlabeled, and the unlabeled split with')
        if 'gt_label' in unlabeled.get_data_info(0):
            raise ValueError(
                'the unlabeled split has gt_label: build it with '
                'unlabeled=dict(n_max=...) so that its labels are kept aside '
                'as true_label and never trained on')
        ours = getattr(labeled, 'source_indices', None)
        theirs = getattr(unlabeled, 'source_indices', None)
        if ours is None or theirs is None:
            return
        if type(labeled) is not type(unlabeled) or getattr(
                labeled, 'data_root', None) != getattr(unlabeled, 'data_root',
                                                       None):
            raise ValueError(
                f'the labeled ({type(labeled).__name__} in '
                f'{getattr(labeled, "data_root", None)}) and unlabeled '
                f'({type(unlabeled).__name__} in '
                f'{getattr(unlabeled, "data_root", None)}) splits must come '
                'from the same training set')
        shared = np.intersect1d(ours, theirs)
        if shared.size:
            raise ValueError(
                f'{shared.size} images are in both the labeled and the '
                f'unlabeled split (training-set indices {shared[:5].tolist()}'
                '...): build the unlabeled split with the same n_max, '
                'imb_factor, imb_type, class_order and seed as the labeled '
                'split, so that it draws from the images the labeled split '
                'leaves out')
