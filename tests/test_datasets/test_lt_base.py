import numpy as np
import pytest
from mmengine.dataset import ClassBalancedDataset, ConcatDataset, RepeatDataset

from mmlt.datasets.lt_base import (LongTailDataset, get_dataset_labels,
                                   make_lt_counts, make_lt_indices)
from mmlt.utils.class_groups import split_classes_by_count


def test_cifar_lt_totals():
    # Published sizes of the LDAM-DRW CIFAR-LT sets.
    assert sum(make_lt_counts(500, 100, 100)) == 10847
    assert sum(make_lt_counts(5000, 10, 100)) == 12406
    # CIFAR-10-LT IF 10 and CIFAR-100-LT IF 10 / 50 (LDAM-DRW, BCL papers).
    assert sum(make_lt_counts(5000, 10, 10)) == 20431
    assert sum(make_lt_counts(500, 100, 10)) == 19573
    assert sum(make_lt_counts(500, 100, 50)) == 12608


@pytest.mark.parametrize('num_classes,per_class,total', [(100, 500, 10847),
                                                         (10, 5000, 12406)])
def test_cifar_lt_selection_sizes(num_classes, per_class, total):
    # Fake CIFAR label arrays (balanced, shuffled) through the selection.
    labels = np.repeat(np.arange(num_classes), per_class)
    np.random.RandomState(0).shuffle(labels)
    counts = make_lt_counts(per_class, num_classes, 100)
    picked = make_lt_indices(labels, counts, seed=0)
    assert len(picked) == total == len(set(picked.tolist()))
    per_label = np.bincount(labels[picked], minlength=num_classes)
    assert per_label.tolist() == counts
    assert per_label[0] == per_class and per_label[-1] == per_class // 100


def test_cifar100_lt_groups():
    def sizes(counts):
        groups = split_classes_by_count(counts)
        return [int((groups == g).sum()) for g in ('many', 'medium', 'few')]

    assert sizes(make_lt_counts(500, 100, 100)) == [35, 35, 30]
    assert sizes(make_lt_counts(500, 100, 50)) == [41, 41, 18]
    assert sizes(make_lt_counts(5000, 10, 100)) == [8, 2, 0]
    assert sizes(make_lt_counts(1000, 10, 100)) == [5, 3, 2]
    # Full Fashion-MNIST at IF 100: the smallest class has 60 images.
    assert sizes(make_lt_counts(6000, 10, 100)) == [8, 2, 0]


def test_fashion_demo_profile():
    counts = make_lt_counts(1000, 10, 100)
    assert counts == [1000, 599, 359, 215, 129, 77, 46, 27, 16, 10]
    assert sum(counts) == 2478


def test_exp_profile_closed_form():
    counts = make_lt_counts(1280, 7, 50)
    expected = [int(1280 * 50**(-i / 6)) for i in range(7)]
    assert counts == expected
    assert counts[0] == 1280 and counts[-1] == int(1280 / 50)
    assert make_lt_counts(300, 1, 10) == [300]
    assert make_lt_counts(300, 4, 1) == [300] * 4


def test_step_profile():
    assert make_lt_counts(500, 10, 10, 'step') == [500] * 5 + [50] * 5
    assert make_lt_counts(100, 5, 4, 'step') == [100] * 2 + [25] * 3
    assert make_lt_counts(100, 4, 4, 'step', head_fraction=0.25) == [
        100, 25, 25, 25
    ]


@pytest.mark.parametrize('kwargs', [
    dict(n_max=0, num_classes=10, imb_factor=10),
    dict(n_max=10, num_classes=0, imb_factor=10),
    dict(n_max=10, num_classes=10, imb_factor=0.5),
    dict(n_max=10, num_classes=10, imb_factor=100),
    dict(n_max=10, num_classes=10, imb_factor=2, imb_type='linear'),
])
def test_make_lt_counts_rejects(kwargs):
    with pytest.raises(ValueError):
        make_lt_counts(**kwargs)


def _ldam_reference_selection(targets, counts, seed):
    """The LDAM-DRW selection written as the obvious loop on global numpy
    state."""
    np.random.seed(seed)
    targets = np.asarray(targets)
    selected = []
    for the_class, the_count in zip(np.unique(targets), counts):
        idx = np.where(targets == the_class)[0]
        np.random.shuffle(idx)
        selected.extend(idx[:the_count].tolist())
    return np.array(selected)


def test_selection_matches_reference_loop():
    rng = np.random.RandomState(3)
    labels = np.repeat(np.arange(10), 50)
    rng.shuffle(labels)
    counts = make_lt_counts(50, 10, 10)
    ours = make_lt_indices(labels, counts, seed=0)
    state = np.random.get_state()
    try:
        ref = _ldam_reference_selection(labels, counts, 0)
    finally:
        np.random.set_state(state)
    np.testing.assert_array_equal(ours, ref)
    assert np.bincount(labels[ours], minlength=10).tolist() == counts
    # No global numpy state is consumed by our selection.
    np.random.seed(123)
    a = np.random.rand()
    np.random.seed(123)
    make_lt_indices(labels, counts, seed=0)
    assert np.random.rand() == a


def test_selection_class_order_and_seed():
    labels = np.repeat(np.arange(4), 20)
    counts = [20, 10, 5, 2]
    order = [2, 0, 3, 1]
    picked = make_lt_indices(labels, counts, class_order=order, seed=1)
    per_class = np.bincount(labels[picked], minlength=4)
    assert per_class.tolist() == [10, 2, 20, 5]
    assert len(set(picked.tolist())) == len(picked)
    other_seed = make_lt_indices(labels, counts, class_order=order, seed=2)
    assert not np.array_equal(np.sort(picked), np.sort(other_seed))
    with pytest.raises(ValueError, match='permutation'):
        make_lt_indices(labels, counts, class_order=[0, 0, 1, 2])
    with pytest.raises(ValueError, match='class 0 has 20'):
        make_lt_indices(labels, [21, 1, 1, 1])


class _ToyLT(LongTailDataset):
    METAINFO = {'classes': ('a', 'b', 'c')}

    def __init__(self, labels, **kwargs):
        self._labels = list(labels)
        super().__init__(ann_file='', **kwargs)

    def load_data_list(self):
        return [dict(gt_label=int(y), img=np.zeros((2, 2, 3), np.uint8))
                for y in self._labels]


def test_long_tail_dataset_protocol():
    ds = _ToyLT([0, 0, 0, 2, 1, 0])
    assert ds.get_cat_ids(3) == [2]
    np.testing.assert_array_equal(ds.get_gt_labels(), [0, 0, 0, 2, 1, 0])
    assert ds.class_counts.tolist() == [4, 1, 1]
    assert ds.num_classes == 3
    subset = ds.get_subset([3, 4])
    assert subset.class_counts.tolist() == [0, 1, 1]
    ds.get_subset_([0, 3])
    assert ds.get_gt_labels().tolist() == [0, 2]
    lazy = _ToyLT([1, 2], lazy_init=True)
    assert lazy.get_cat_ids(1) == [2]


def test_get_dataset_labels_unwraps_wrappers():
    a = _ToyLT([0, 1, 1])
    b = _ToyLT([2, 2, 0, 1])
    concat = ConcatDataset([a, b])
    labels = get_dataset_labels(concat)
    assert labels.tolist() == [0, 1, 1, 2, 2, 0, 1]
    # Compare with the wrapper's own index mapping.
    assert labels.tolist() == [
        concat.get_data_info(i)['gt_label'] for i in range(len(concat))
    ]
    repeat = RepeatDataset(a, times=3)
    assert get_dataset_labels(repeat).tolist() == [0, 1, 1] * 3
    balanced = ClassBalancedDataset(_ToyLT([0] * 8 + [1]), oversample_thr=0.5)
    expected = [
        balanced.get_data_info(i)['gt_label'] for i in range(len(balanced))
    ]
    assert get_dataset_labels(balanced).tolist() == expected
    assert expected.count(1) > 1  # the rare class was repeated


def test_get_dataset_labels_fallback_and_errors():

    class CatIds:

        def __len__(self):
            return 3

        def get_cat_ids(self, idx):
            return [idx % 2]

    assert get_dataset_labels(CatIds()).tolist() == [0, 1, 0]

    class MultiLabel(CatIds):

        def get_cat_ids(self, idx):
            return [0, 1]

    with pytest.raises(ValueError, match='exactly one label'):
        get_dataset_labels(MultiLabel())
    with pytest.raises(ValueError, match='get_cat_ids'):
        get_dataset_labels([1, 2, 3])
