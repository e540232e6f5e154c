"""Labeled and unlabeled splits of long-tailed semi-supervised learning."""
import gzip
import os.path as osp

import numpy as np
import pytest

from fake_data import write_fake_fashion_mnist
from mmlt.datasets import FashionMNISTLT, SemiSupervisedDataset
from mmlt.datasets.lt_base import (class_counts, make_lt_counts,
                                   make_unlabeled_counts)


@pytest.fixture(scope='module')
def root(tmp_path_factory):
    # 30 training images per class
    return write_fake_fashion_mnist(str(tmp_path_factory.mktemp('fmnist')))


def raw_labels(root):
    with gzip.open(osp.join(root, 'train-labels-idx1-ubyte.gz')) as f:
        return np.frombuffer(f.read(), np.uint8, offset=8).astype(np.int64)


LABELED = dict(n_max=8, imb_factor=4, seed=0)


def test_unlabeled_counts_by_hand():
    # int(3000 * 0.01 ** (i / 9)), i = 0..9, and reversed
    consistent = [3000, 1798, 1078, 646, 387, 232, 139, 83, 50, 30]
    assert make_unlabeled_counts(3000, 10, 100) == consistent
    assert make_unlabeled_counts(3000, 10, 100, 'reversed') == \
        consistent[::-1]
    assert make_unlabeled_counts(3000, 10, 100, 'uniform') == [3000] * 10
    # CIFAR-100-LT protocol: M1 = 300, IF 10: the tail class has 30
    counts = make_unlabeled_counts(300, 100, 10)
    assert counts[0] == 300 and counts[-1] == 30
    with pytest.raises(ValueError, match='profile'):
        make_unlabeled_counts(10, 10, 10, 'balanced')


@pytest.mark.parametrize('profile', ['consistent', 'uniform', 'reversed'])
def test_unlabeled_split_counts_and_no_overlap(root, profile):
    labeled = FashionMNISTLT(data_root=root, **LABELED)
    unlabeled = FashionMNISTLT(
        data_root=root, **LABELED,
        unlabeled=dict(n_max=12, imb_factor=4, profile=profile, seed=3))
    # int(12 * 0.25 ** (i / 9)) by hand
    consistent = [12, 10, 8, 7, 6, 5, 4, 4, 3, 3]
    expected = dict(consistent=consistent, uniform=[12] * 10,
                    reversed=consistent[::-1])[profile]
    true = unlabeled.get_true_labels()
    assert np.bincount(true, minlength=10).tolist() == expected
    assert labeled.class_counts.tolist() == make_lt_counts(8, 10, 4)
    # disjoint, and each entry's kept-aside label is the file's label
    assert not set(labeled.source_indices) & set(unlabeled.source_indices)
    labels = raw_labels(root)
    np.testing.assert_array_equal(labels[unlabeled.source_indices], true)
    np.testing.assert_array_equal(labels[labeled.source_indices],
                                  labeled.get_gt_labels())
    entry = unlabeled[0]
    assert 'gt_label' not in entry and 'true_label' in entry
    with pytest.raises(ValueError, match='unlabeled split'):
        unlabeled.get_gt_labels()

    both = SemiSupervisedDataset(labeled, unlabeled)
    assert len(both) == len(labeled) + len(unlabeled)
    # the run's prior is the labeled split's
    assert class_counts(both).tolist() == labeled.class_counts.tolist()


def test_labeled_split_unchanged_by_the_unlabeled_option(root):
    """The labeled subset is the supervised demo's, image for image."""
    plain = FashionMNISTLT(data_root=root, **LABELED)
    again = FashionMNISTLT(data_root=root, **LABELED)
    np.testing.assert_array_equal(plain.source_indices, again.source_indices)
    assert plain.source_indices.size == sum(make_lt_counts(8, 10, 4))


def test_unlabeled_split_larger_than_what_remains(root):
    # class 0: 30 images - 8 labeled = 22 left
    with pytest.raises(ValueError, match='22 images left after the labeled'):
        FashionMNISTLT(data_root=root, **LABELED,
                       unlabeled=dict(n_max=23, profile='uniform'))
    FashionMNISTLT(data_root=root, **LABELED,
                   unlabeled=dict(n_max=22, profile='uniform'))


def test_overlapping_splits_are_refused(root):
    labeled = FashionMNISTLT(data_root=root, **LABELED)
    # the unlabeled split left out another labeled split (seed 1)
    unlabeled = FashionMNISTLT(
        data_root=root, n_max=8, imb_factor=4, seed=1,
        unlabeled=dict(n_max=20, profile='uniform'))
    with pytest.raises(ValueError, match='in both the labeled and the '
                       'unlabeled split'):
        SemiSupervisedDataset(labeled, unlabeled)


def test_bad_split_arguments(root):
    labeled = FashionMNISTLT(data_root=root, **LABELED)
    with pytest.raises(ValueError, match='has gt_label'):
        SemiSupervisedDataset(labeled, labeled)
    unlabeled = FashionMNISTLT(data_root=root, **LABELED,
                               unlabeled=dict(n_max=4))
    with pytest.raises(ValueError, match='labeled split was built with'):
        SemiSupervisedDataset(unlabeled, unlabeled)
    with pytest.raises(ValueError, match="split='train'"):
        FashionMNISTLT(data_root=root, split='test', unlabeled=dict(n_max=4))
    with pytest.raises(ValueError, match='n_max given'):
        FashionMNISTLT(data_root=root, unlabeled=dict(m_max=4))
