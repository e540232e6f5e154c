"""Small data sets in the real on-disk formats, written by the tests."""
import gzip
import os
import os.path as osp
import pickle
import struct

import numpy as np


def idx_bytes(array):
    """IDX encoding: 0, 0, type 0x08 (ubyte), ndim, big-endian sizes, data."""
    array = np.asarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(
        f'>{array.ndim}I', *array.shape)
    return header + array.tobytes()


def write_fake_fashion_mnist(root, per_class_train=30, per_class_test=4,
                             size=28, seed=0):
    """Fashion-MNIST-format .gz IDX files with learnable 28x28 images.

    Class ``c`` is a bright horizontal bar at a class-specific height plus
    noise, so a small network can learn it in a few steps.
    """
    os.makedirs(root, exist_ok=True)
    rng = np.random.RandomState(seed)
    for stem, per_class in (('train', per_class_train), ('t10k',
                                                         per_class_test)):
        labels = np.repeat(np.arange(10), per_class).astype(np.uint8)
        rng.shuffle(labels)
        images = rng.randint(0, 60, (len(labels), size, size)).astype(
            np.uint8)
        rows = (np.arange(10) * (size - 3) // 9)
        for i, label in enumerate(labels):
            images[i, rows[label]:rows[label] + 3, :] = 230
        for kind, data in (('images-idx3', images), ('labels-idx1', labels)):
            with gzip.open(osp.join(root, f'{stem}-{kind}-ubyte.gz'),
                           'wb') as f:
                f.write(idx_bytes(data))
    return root


def write_fake_cifar(root, num_classes, per_class=4, seed=0):
    """CIFAR-10/100 python archives (extracted) with random images."""
    rng = np.random.RandomState(seed)
    if num_classes == 10:
        folder, label_key = 'cifar-10-batches-py', b'labels'
        files = [f'data_batch_{i}' for i in range(1, 6)] + ['test_batch']
    else:
        folder, label_key = 'cifar-100-python', b'fine_labels'
        files = ['train', 'test']
    os.makedirs(osp.join(root, folder))
    for name in files:
        labels = list(range(num_classes)) * per_class
        batch = {
            b'data': rng.randint(0, 256, (len(labels), 3072)).astype(
                np.uint8),
            label_key: labels,
        }
        with open(osp.join(root, folder, name), 'wb') as f:
            pickle.dump(batch, f)
