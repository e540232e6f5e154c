"""The declared pieces of exact resume: datasets that seed their items
(mmlt.SeededDataset, mmlt.ClassBalancedDataset, mmlt's own datasets) and
samplers that skip the first indices of a resumed epoch."""
import pickle

import numpy as np
import pytest
import torch
from mmengine.dataset import ClassBalancedDataset as MMEngineCBD
from mmengine.dataset import DefaultSampler

from mmlt.datasets import (ClassBalancedDataset, SeededDataset,
                           SemiSupervisedDataset, get_dataset_labels)
from mmlt.datasets.lt_base import LongTailDataset
from mmlt.datasets.samplers import (ClassAwareSampler, MultiSourceSampler,
                                    ProgressivelyBalancedSampler,
                                    ResumableSampler, SquareRootSampler)
from mmlt.engine.protocols import SeedsItems, SkipsFirstIndices
from mmlt.registry import DATA_SAMPLERS, DATASETS
from mmlt.utils.seeding import DATA_DOMAIN, derived_seed


class NoisyLabels(LongTailDataset):
    """Item = (label, a draw from torch's generator)."""
    METAINFO = {'classes': ('a', 'b', 'c')}

    def __init__(self, labels, **kwargs):
        self._labels = list(labels)
        super().__init__(ann_file='', **kwargs)

    def load_data_list(self):
        return [dict(gt_label=int(y)) for y in self._labels]

    def prepare_data(self, idx):
        return (self.get_data_info(idx)['gt_label'], torch.rand(()).item())


class PlainDataset(torch.utils.data.Dataset):
    """No seeding of its own, no mmengine base."""
    metainfo = {'classes': ('a', 'b')}

    def __len__(self):
        return 5

    def __getitem__(self, idx):
        return torch.rand(())

    def get_data_info(self, idx):
        return dict(gt_label=idx % 2)

    def get_gt_labels(self):
        return np.arange(5) % 2


LABELS = [0, 0, 0, 0, 1, 1, 2]


def test_mmlt_datasets_declare_seeding():
    assert isinstance(NoisyLabels(LABELS), SeedsItems)
    assert issubclass(SemiSupervisedDataset, SeedsItems)
    assert issubclass(ClassBalancedDataset, MMEngineCBD)


def test_item_seed_is_derived_from_seed_epoch_and_index():
    dataset = NoisyLabels(LABELS)
    dataset.set_item_seed_key(torch.tensor([3, 1]))
    _, draw = dataset[4]
    expected = torch.Generator().manual_seed(
        derived_seed(DATA_DOMAIN, 3, 1, 4))
    assert draw == torch.rand((), generator=expected).item()


def test_seeded_dataset_is_transparent():
    inner = PlainDataset()
    dataset = DATASETS.build(dict(type='mmlt.SeededDataset', dataset=inner))
    assert len(dataset) == 5 and dataset.metainfo == inner.metainfo
    assert dataset.get_data_info(3) == dict(gt_label=1)
    assert np.array_equal(get_dataset_labels(dataset), [0, 1, 0, 1, 0])
    torch.manual_seed(0)
    unkeyed = dataset[2]
    torch.manual_seed(0)
    assert dataset[2] == unkeyed  # no key: the item as the dataset gives it
    dataset.set_item_seed_key(torch.tensor([0, 0]))
    assert dataset[2] == dataset[2] != dataset[3]
    copy = pickle.loads(pickle.dumps(dataset))
    assert copy[2] == dataset[2]
    with pytest.raises(TypeError, match='map-style dataset'):
        SeededDataset(object())


def test_class_balanced_dataset_seeds_each_repeat_on_its_own():
    """Repeat-factor sampling repeats the rare image; its repeats (other
    indices of the wrapper) must get their own augmentation."""
    dataset = ClassBalancedDataset(NoisyLabels(LABELS), oversample_thr=0.5)
    assert isinstance(dataset, SeedsItems) and len(dataset) > len(LABELS)
    dataset.set_item_seed_key(torch.tensor([0, 0]))
    repeats = [i for i in range(len(dataset))
               if dataset.repeat_indices[i] == 6]
    assert len(repeats) >= 2
    draws = [dataset[i][1] for i in repeats]
    assert len(set(draws)) == len(draws)


def sampler_of(cls, dataset):
    if cls is ProgressivelyBalancedSampler:
        return cls(dataset, total_epochs=4, seed=0)
    return cls(dataset, seed=0)


@pytest.mark.parametrize('cls', [ResumableSampler, ClassAwareSampler,
                                 SquareRootSampler,
                                 ProgressivelyBalancedSampler])
def test_skip_first_leaves_out_the_start_of_each_pass(cls):
    dataset = NoisyLabels(LABELS * 3)
    sampler = sampler_of(cls, dataset)
    assert isinstance(sampler, SkipsFirstIndices)
    sampler.set_epoch(2)
    full = list(sampler)
    sampler.skip_first(5)
    assert list(sampler) == full[5:] and len(sampler) == len(full) - 5
    sampler.skip_first(len(full) + 3)
    assert list(sampler) == [] and len(sampler) == 0
    sampler.skip_first(0)
    assert list(sampler) == full
    with pytest.raises(ValueError, match='num_indices'):
        sampler.skip_first(-1)


def test_resumable_sampler_is_default_sampler():
    dataset = NoisyLabels(LABELS * 3)
    ours = DATA_SAMPLERS.build(
        dict(type='mmlt.ResumableSampler', shuffle=True, seed=4),
        default_args=dict(dataset=dataset))
    theirs = DefaultSampler(dataset, shuffle=True, seed=4)
    for epoch in (0, 1):
        ours.set_epoch(epoch)
        theirs.set_epoch(epoch)
        assert list(ours) == list(theirs) and len(ours) == len(theirs)


def test_multi_source_sampler_declares_skipping():
    assert issubclass(MultiSourceSampler, SkipsFirstIndices)


def test_rfs_matched_class_aware_sampler_skips():
    pytest.importorskip('mmdet')
    from mmlt.integrations.mmdet.rfs_matched_class_aware_sampler import \
        RFSMatchedClassAwareSampler
    dataset = NoisyLabels(LABELS * 3)
    sampler = RFSMatchedClassAwareSampler(dataset, seed=0,
                                          oversample_thr=0.5)
    full = list(sampler)
    sampler.skip_first(4)
    assert list(sampler) == full[4:] and len(sampler) == len(full) - 4
