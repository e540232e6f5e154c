"""Training datasets whose augmentations depend only on ``(seed, epoch,
index)``, so a resumed run loads what an uninterrupted one would have loaded.

mmlt's own datasets (:class:`LongTailDataset` and its subclasses,
:class:`SemiSupervisedDataset`, ``LVISV1WithClassCounts``) inherit
:class:`SeededItems`; any other dataset takes part wrapped in
:class:`SeededDataset`, and MMEngine's repeat-factor wrapper is
:class:`ClassBalancedDataset` here (the wrapper's index, not the image's, is
seeded, so the repeats of an image are augmented independently).
:class:`mmlt.ExactResumeHook` hands the training dataset its seed key.
"""
import copy
from typing import Union

from mmengine.dataset import ClassBalancedDataset as _ClassBalancedDataset
from torch.utils.data import Dataset

from mmlt.engine.protocols import SeedsItems
from mmlt.registry import DATASETS
from mmlt.utils.seeding import DATA_DOMAIN, derived_seed, seed_everything


class SeededItems(SeedsItems):
    """Seeds Python's, NumPy's and torch's CPU generators from ``(seed,
    epoch, index)`` before each item, once :meth:`set_item_seed_key` gave
    the key; put it before the dataset class in the bases."""

    _item_seed_key = None

    def set_item_seed_key(self, key) -> None:
        """Seed later items from ``key``: a shared-memory ``[seed, epoch]``
        long tensor that its owner updates in place."""
        self._item_seed_key = key

    def __getitem__(self, idx: int):
        key = self._item_seed_key
        if key is not None:
            seed, epoch = key.tolist()
            seed_everything(derived_seed(DATA_DOMAIN, seed, epoch, idx),
                            cuda=False)
        return super().__getitem__(idx)


class _DatasetView(Dataset):
    """Indexes ``self.dataset`` (the base below :class:`SeededItems`)."""

    def __getitem__(self, idx: int):
        return self.dataset[idx]


@DATASETS.register_module()
class SeededDataset(SeededItems, _DatasetView):
    """Any dataset, with per-sample seeds for :class:`mmlt.ExactResumeHook`.

    Indices, length, ``metainfo`` and every other attribute are the wrapped
    dataset's. For datasets that do not seed their items themselves::

        train_dataloader = dict(
            dataset=dict(type='mmlt.SeededDataset',
                         dataset=dict(type='ImageNet', ...)))

    Args:
        dataset (dict | Dataset): The dataset or its config.
    """

    # Read by mmlt.datasets.dataset_wrappers: index i is the dataset's i.
    same_indices_as_dataset = True

    def __init__(self, dataset: Union[dict, Dataset]) -> None:
        if isinstance(dataset, dict):
            dataset = DATASETS.build(dataset)
        if not hasattr(dataset, '__getitem__') or not hasattr(
                dataset, '__len__'):
            raise TypeError(
                'mmlt.SeededDataset wraps a map-style dataset (one with '
                f'__getitem__ and __len__); got {type(dataset).__name__}')
        self.dataset = dataset

    @property
    def metainfo(self) -> dict:
        return copy.deepcopy(getattr(self.dataset, 'metainfo', {}))

    def full_init(self) -> None:
        if callable(getattr(self.dataset, 'full_init', None)):
            self.dataset.full_init()

    def get_data_info(self, idx: int) -> dict:
        return self.dataset.get_data_info(idx)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getattr__(self, name: str):
        # Only called for names not found on the wrapper; 'dataset' itself
        # is missing while unpickling.
        if name == 'dataset':
            raise AttributeError(name)
        return getattr(self.dataset, name)


@DATASETS.register_module()
class ClassBalancedDataset(SeededItems, _ClassBalancedDataset):
    """MMEngine's ``ClassBalancedDataset`` (repeat-factor sampling) with
    per-sample seeds for :class:`mmlt.ExactResumeHook`; the same arguments.
    """
