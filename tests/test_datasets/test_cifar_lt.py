import os
import os.path as osp
import pickle
import tarfile

import numpy as np
import pytest

from mmlt.datasets import (CIFAR10LT, CIFAR100LT, DatasetFilesNotFoundError,
                           make_lt_indices)


def _fake_batch(labels, label_key, offset):
    """A CIFAR batch dict: b'data' rows of 1024 R, 1024 G, 1024 B values."""
    n = len(labels)
    data = np.zeros((n, 3, 32, 32), dtype=np.uint8)
    data[:, 0] = 10  # red plane
    data[:, 1] = 20  # green plane
    data[:, 2] = 30  # blue plane
    # Encode the global image id at pixel (0, 0) of the red plane and at
    # row 1, column 2 of the green plane (checks the HWC transpose).
    ids = offset + np.arange(n)
    data[:, 0, 0, 0] = ids % 256
    data[:, 1, 1, 2] = ids // 256
    return {
        b'data': data.reshape(n, 3072),
        label_key: [int(y) for y in labels],
        b'batch_label': b'fake'
    }


def _write_cifar10(root, per_class=20, test_per_class=2):
    folder = osp.join(root, 'cifar-10-batches-py')
    os.makedirs(folder)
    rng = np.random.RandomState(1)
    labels = np.repeat(np.arange(10), per_class)
    rng.shuffle(labels)
    chunks = np.array_split(labels, 5)
    offset = 0
    for i, chunk in enumerate(chunks, start=1):
        with open(osp.join(folder, f'data_batch_{i}'), 'wb') as f:
            pickle.dump(_fake_batch(chunk, b'labels', offset), f)
        offset += len(chunk)
    test_labels = np.repeat(np.arange(10), test_per_class)
    with open(osp.join(folder, 'test_batch'), 'wb') as f:
        pickle.dump(_fake_batch(test_labels, b'labels', 0), f)
    return labels, test_labels


def _write_cifar100(root, per_class=6, as_archive=False):
    folder = osp.join(root, 'cifar-100-python')
    os.makedirs(folder)
    rng = np.random.RandomState(2)
    labels = np.repeat(np.arange(100), per_class)
    rng.shuffle(labels)
    with open(osp.join(folder, 'train'), 'wb') as f:
        pickle.dump(_fake_batch(labels, b'fine_labels', 0), f)
    test_labels = np.arange(100)
    with open(osp.join(folder, 'test'), 'wb') as f:
        pickle.dump(_fake_batch(test_labels, b'fine_labels', 0), f)
    if as_archive:
        with tarfile.open(osp.join(root, 'cifar-100-python.tar.gz'),
                          'w:gz') as tar:
            tar.add(folder, arcname='cifar-100-python')
        for name in ('train', 'test'):
            os.remove(osp.join(folder, name))
        os.rmdir(folder)
    return labels, test_labels


def _image_id(img):
    return int(img[0, 0, 0]) + 256 * int(img[1, 2, 1])


def test_cifar10_lt_from_folder(tmp_path):
    labels, _ = _write_cifar10(str(tmp_path))
    ds = CIFAR10LT(data_root=str(tmp_path), imb_factor=10, n_max=20)
    counts = [int(20 * 0.1**(i / 9)) for i in range(10)]
    assert ds.class_counts.tolist() == counts
    picked = make_lt_indices(labels, counts, seed=0)
    ids = []
    for i in range(len(ds)):
        info = ds.get_data_info(i)
        img = info['img']
        assert img.shape == (32, 32, 3) and img.dtype == np.uint8
        # RGB order, HWC layout.
        assert (img[5, 5] == [10, 20, 30]).all()
        ids.append(_image_id(img))
        assert info['gt_label'] == labels[ids[-1]]
    assert ids == picked.tolist()
    assert ds.metainfo['classes'][0] == 'airplane'
    # data_root may also be the extracted folder itself.
    inner = CIFAR10LT(
        data_root=str(tmp_path / 'cifar-10-batches-py'),
        imb_factor=10,
        n_max=20)
    assert inner.get_gt_labels().tolist() == ds.get_gt_labels().tolist()
    test = CIFAR10LT(data_root=str(tmp_path), split='test')
    assert len(test) == 20 and test.class_counts.tolist() == [2] * 10
    assert test.test_mode


@pytest.mark.parametrize('as_archive', [False, True])
def test_cifar100_lt(tmp_path, as_archive):
    labels, test_labels = _write_cifar100(str(tmp_path), as_archive=as_archive)
    ds = CIFAR100LT(data_root=str(tmp_path), imb_factor=6, n_max=6, seed=3)
    counts = [int(6 * (1 / 6)**(i / 99)) for i in range(100)]
    assert ds.class_counts.tolist() == counts
    picked = make_lt_indices(labels, counts, seed=3)
    assert [_image_id(ds.get_data_info(i)['img'])
            for i in range(len(ds))] == picked.tolist()
    assert len(ds.metainfo['classes']) == 100
    assert ds.metainfo['classes'][99] == 'worm'
    test = CIFAR100LT(data_root=str(tmp_path), split='test')
    assert test.get_gt_labels().tolist() == test_labels.tolist()


def test_cifar_errors(tmp_path):
    with pytest.raises(DatasetFilesNotFoundError, match='data_preparation'):
        CIFAR10LT(data_root=str(tmp_path))
    _write_cifar10(str(tmp_path))
    # Default n_max is 5000 per class: the fake set is too small.
    with pytest.raises(ValueError, match='asks for 5000'):
        CIFAR10LT(data_root=str(tmp_path))
    os.remove(tmp_path / 'cifar-10-batches-py' / 'data_batch_3')
    with pytest.raises(DatasetFilesNotFoundError, match='data_batch_3'):
        CIFAR10LT(data_root=str(tmp_path), n_max=2, imb_factor=2)
    with pytest.raises(ValueError, match='split'):
        CIFAR10LT(data_root=str(tmp_path), split='validation')
