"""The validation split of the LT datasets built from balanced sets
(``split='val'``): class-stratified, seeded, disjoint from the long-tailed
training subset, the unlabeled split and the test set."""
import numpy as np
import pytest

from fake_data import write_fake_cifar, write_fake_fashion_mnist
from mmlt.datasets import CIFAR10LT, FashionMNISTLT, make_lt_counts
from mmlt.datasets.lt_base import make_val_indices


def test_make_val_indices_by_hand():
    # class 0: images 0-3, class 1: images 4-8; 0, 1 and 4 are excluded
    labels = [0, 0, 0, 0, 1, 1, 1, 1, 1]
    held = make_val_indices(labels, 2, 2, exclude=np.array([0, 1, 4]),
                            seed=3)
    assert held.dtype == np.int64
    # class 0 has exactly {2, 3} left: both held out, in class order
    assert sorted(held[:2].tolist()) == [2, 3]
    assert set(held[2:].tolist()) <= {5, 6, 7, 8} and len(set(held[2:])) == 2
    # seeded: the same draw again, another draw for another seed
    again = make_val_indices(labels, 2, 2, exclude=np.array([0, 1, 4]),
                             seed=3)
    np.testing.assert_array_equal(held, again)
    draws = {tuple(make_val_indices(labels, 2, 2, np.array([0, 1, 4]),
                                    seed=s)[2:]) for s in range(20)}
    assert len(draws) > 1


def test_make_val_indices_too_few_left():
    labels = [0, 0, 1, 1, 1]
    with pytest.raises(ValueError, match='min_val_per_class=0'):
        make_val_indices(labels, 2, 2, exclude=np.array([0]))
    # a class may come up short (here: class 0 has one image left)
    held = make_val_indices(labels, 2, 2, exclude=np.array([0]),
                            min_per_class=1)
    assert held[0] == 1 and len(held) == 3
    for bad in (dict(n_per_class=0), dict(n_per_class=2, min_per_class=3),
                dict(n_per_class=2, min_per_class=-1)):
        with pytest.raises(ValueError, match='val_per_class'):
            make_val_indices(labels, 2, exclude=np.array([0]), **bad)


@pytest.fixture(scope='module')
def fashion_root(tmp_path_factory):
    return write_fake_fashion_mnist(str(tmp_path_factory.mktemp('fmnist')),
                                    per_class_train=40, per_class_test=4)


def _image_keys(dataset):
    return {dataset.get_data_info(i)['img'].tobytes()
            for i in range(len(dataset))}


def test_fashion_val_split_is_disjoint_balanced_and_seeded(fashion_root):
    common = dict(data_root=fashion_root, n_max=24, imb_factor=6)
    train = FashionMNISTLT(split='train', **common)
    val = FashionMNISTLT(split='val', n_val_per_class=5, **common)
    test = FashionMNISTLT(split='test', **common)
    np.testing.assert_array_equal(val.class_counts, [5] * 10)
    assert val.test_mode and not train.test_mode
    # disjoint from the training subset (same files) ...
    assert not set(val.source_indices) & set(train.source_indices)
    # ... and from the test set (other files; compared by content, since
    # the fake images are random and distinct)
    assert not _image_keys(val) & _image_keys(test)
    assert not _image_keys(val) & _image_keys(train)
    # labels are those of the training file at the held-out indices
    from mmlt.datasets.fashion_mnist_lt import _find_idx_file, read_idx_file
    file_labels = read_idx_file(
        _find_idx_file(fashion_root, 'train-labels-idx1-ubyte'))
    np.testing.assert_array_equal(file_labels[val.source_indices],
                                  val.get_gt_labels())
    # the training split is unchanged by the option
    plain = FashionMNISTLT(split='train', data_root=fashion_root, n_max=24,
                           imb_factor=6, n_val_per_class=7, val_seed=9)
    np.testing.assert_array_equal(plain.source_indices, train.source_indices)
    other = FashionMNISTLT(split='val', n_val_per_class=5, val_seed=1,
                           **common)
    assert set(other.source_indices) != set(val.source_indices)


def test_fashion_val_split_of_a_semi_supervised_setting(fashion_root):
    common = dict(data_root=fashion_root, n_max=8, imb_factor=4)
    unlabeled_cfg = dict(n_max=12, imb_factor=2)
    unlabeled = FashionMNISTLT(split='train', unlabeled=unlabeled_cfg,
                               **common)
    labeled = FashionMNISTLT(split='train', **common)
    val = FashionMNISTLT(split='val', unlabeled=unlabeled_cfg,
                         n_val_per_class=6, **common)
    assert not set(val.source_indices) & set(unlabeled.source_indices)
    assert not set(val.source_indices) & set(labeled.source_indices)
    # every training image of class 0 is used: 8 + 12 + 6 of 40 ...
    np.testing.assert_array_equal(val.class_counts, [6] * 10)
    # ... and the val split has labels (the unlabeled split hides them)
    assert val.get_gt_labels().shape == (60, )
    with pytest.raises(ValueError, match='min_val_per_class'):
        FashionMNISTLT(split='val', unlabeled=unlabeled_cfg,
                       n_val_per_class=21, **common)


def test_cifar_val_split_when_the_head_class_is_used_up(tmp_path):
    root = str(tmp_path)
    write_fake_cifar(root, 10, per_class=4)  # 5 batches: 20 per class
    counts = make_lt_counts(20, 10, 4)
    with pytest.raises(ValueError, match='class 0 has 0 training images'):
        CIFAR10LT(data_root=root, split='val', n_max=20, imb_factor=4,
                  n_val_per_class=3)
    val = CIFAR10LT(data_root=root, split='val', n_max=20, imb_factor=4,
                    n_val_per_class=3, min_val_per_class=0)
    expected = [min(3, 20 - n) for n in counts]
    assert expected[0] == 0
    np.testing.assert_array_equal(val.class_counts, expected)
    train = CIFAR10LT(data_root=root, split='train', n_max=20, imb_factor=4)
    assert not set(val.source_indices) & set(train.source_indices)


def test_bad_split_arguments(fashion_root):
    with pytest.raises(ValueError, match="'train', 'val', 'test'"):
        FashionMNISTLT(data_root=fashion_root, split='validation')
    with pytest.raises(ValueError, match='n_val_per_class'):
        FashionMNISTLT(data_root=fashion_root, split='val',
                       n_val_per_class=0, lazy_init=True)
    with pytest.raises(ValueError, match="split='train'"):
        FashionMNISTLT(data_root=fashion_root, split='test',
                       unlabeled=dict(n_max=4))
