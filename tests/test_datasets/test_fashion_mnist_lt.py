import gzip
import os.path as osp
import struct

import numpy as np
import pytest

from mmlt.datasets import DatasetFilesNotFoundError, FashionMNISTLT
from mmlt.datasets.fashion_mnist_lt import read_idx_file
from mmlt.registry import DATASETS

REAL_ROOT = '/usr/share/datasets/fashion-mnist'
REAL_FILES = [
    'train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz',
    't10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz'
]


def _idx_bytes(array):
    """IDX encoding written from the format description: 0, 0, type 0x08
    (ubyte), ndim, big-endian uint32 sizes, data."""
    array = np.asarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(
        f'>{array.ndim}I', *array.shape)
    return header + array.tobytes()


def _write_fake_fashion(root, per_class_train=12, per_class_test=3,
                        compress=True):
    rng = np.random.RandomState(0)
    files = {}
    for stem, per_class in (('train', per_class_train), ('t10k',
                                                         per_class_test)):
        labels = np.repeat(np.arange(10), per_class).astype(np.uint8)
        rng.shuffle(labels)
        # Pixel (0, 0) stores the label and pixel (0, 1) the index, so that
        # tests can trace every image back to the file.
        images = rng.randint(0, 256, (len(labels), 5, 4)).astype(np.uint8)
        images[:, 0, 0] = labels
        images[:, 0, 1] = np.arange(len(labels))
        files[stem] = (images, labels)
        for kind, data in (('images-idx3', images), ('labels-idx1', labels)):
            name = f'{stem}-{kind}-ubyte'
            raw = _idx_bytes(data)
            if compress:
                with gzip.open(osp.join(root, name + '.gz'), 'wb') as f:
                    f.write(raw)
            else:
                with open(osp.join(root, name), 'wb') as f:
                    f.write(raw)
    return files


@pytest.mark.parametrize('compress', [True, False])
def test_read_idx_roundtrip(tmp_path, compress):
    files = _write_fake_fashion(str(tmp_path), compress=compress)
    suffix = '.gz' if compress else ''
    images = read_idx_file(
        str(tmp_path / f'train-images-idx3-ubyte{suffix}'))
    labels = read_idx_file(
        str(tmp_path / f'train-labels-idx1-ubyte{suffix}'))
    np.testing.assert_array_equal(images, files['train'][0])
    np.testing.assert_array_equal(labels, files['train'][1])


def test_read_idx_rejects_bad_files(tmp_path):
    bad = tmp_path / 'bad'
    bad.write_bytes(b'\x12\x34\x08\x01' + struct.pack('>I', 3) + b'abc')
    with pytest.raises(ValueError, match='not an IDX file'):
        read_idx_file(str(bad))
    short = tmp_path / 'short'
    short.write_bytes(b'\x00\x00\x08\x01' + struct.pack('>I', 5) + b'abc')
    with pytest.raises(ValueError, match='5'):
        read_idx_file(str(short))


@pytest.mark.parametrize('compress', [True, False])
def test_fake_train_split_long_tailed(tmp_path, compress):
    files = _write_fake_fashion(str(tmp_path), compress=compress)
    ds = FashionMNISTLT(
        data_root=str(tmp_path), n_max=12, imb_factor=6, seed=0)
    expected_counts = [int(12 * 6**(-i / 9)) for i in range(10)]
    assert ds.class_counts.tolist() == expected_counts
    assert len(ds) == sum(expected_counts)
    images, labels = files['train']
    for idx in range(len(ds)):
        info = ds.get_data_info(idx)
        img = info['img']
        assert img.shape == (5, 4, 3) and img.dtype == np.uint8
        # The three channels replicate the gray image from the file.
        source = images[img[0, 1, 0]]
        np.testing.assert_array_equal(img, np.repeat(source[..., None], 3, -1))
        assert info['gt_label'] == labels[img[0, 1, 0]] == img[0, 0, 0]
        assert ds.get_cat_ids(idx) == [info['gt_label']]
    # The selection is the LDAM-DRW one on the file's labels.
    from mmlt.datasets import make_lt_indices
    picked = make_lt_indices(labels.astype(np.int64), expected_counts, seed=0)
    assert [ds.get_data_info(i)['img'][0, 1, 0]
            for i in range(len(ds))] == picked.tolist()


def test_fake_test_split_and_options(tmp_path):
    _write_fake_fashion(str(tmp_path))
    test = FashionMNISTLT(
        data_root=str(tmp_path), split='test', color_type='grayscale')
    assert len(test) == 30 and test.class_counts.tolist() == [3] * 10
    assert test.test_mode
    assert test.get_data_info(0)['img'].shape == (5, 4)
    ordered = FashionMNISTLT(
        data_root=str(tmp_path),
        n_max=10,
        imb_factor=10,
        class_order=[9, 8, 7, 6, 5, 4, 3, 2, 1, 0])
    assert ordered.class_counts.tolist() == make_counts_reversed(10, 10)
    step = FashionMNISTLT(
        data_root=str(tmp_path), n_max=10, imb_factor=5, imb_type='step')
    assert step.class_counts.tolist() == [10] * 5 + [2] * 5
    # Built from a config through the registry.
    built = DATASETS.build(
        dict(type='mmlt.FashionMNISTLT', data_root=str(tmp_path), n_max=4,
             imb_factor=2))
    assert built.class_counts[0] == 4 and built.class_counts[-1] == 2


def make_counts_reversed(n_max, imb_factor):
    return [int(n_max * imb_factor**(-i / 9)) for i in range(10)][::-1]


def test_errors(tmp_path):
    with pytest.raises(DatasetFilesNotFoundError, match='data_preparation'):
        FashionMNISTLT(data_root=str(tmp_path))
    _write_fake_fashion(str(tmp_path))
    with pytest.raises(ValueError, match='asks for'):
        FashionMNISTLT(data_root=str(tmp_path), n_max=13, imb_factor=2)
    with pytest.raises(ValueError, match='split'):
        FashionMNISTLT(data_root=str(tmp_path), split='validation')
    with pytest.raises(ValueError, match='color_type'):
        FashionMNISTLT(data_root=str(tmp_path), color_type='rgb')


@pytest.mark.skipif(
    not all(osp.isfile(osp.join(REAL_ROOT, f)) for f in REAL_FILES),
    reason='Fashion-MNIST (dataset-fashion-mnist) is not installed')
def test_real_fashion_mnist():
    train = FashionMNISTLT()
    assert train.class_counts.tolist() == [
        1000, 599, 359, 215, 129, 77, 46, 27, 16, 10
    ]
    assert len(train) == 2478
    img = train.get_data_info(0)['img']
    assert img.shape == (28, 28, 3) and img.dtype == np.uint8
    assert img.max() > 0
    test = FashionMNISTLT(split='test', color_type='grayscale')
    assert len(test) == 10000
    assert test.class_counts.tolist() == [1000] * 10
    assert test.get_data_info(0)['img'].shape == (28, 28)
