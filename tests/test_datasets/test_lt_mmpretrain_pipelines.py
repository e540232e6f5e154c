"""mmlt's datasets feed MMPretrain 1.2 pipelines (skipped without
mmpretrain)."""
import gzip
import os
import os.path as osp
import pickle
import struct

import numpy as np
import pytest

pytest.importorskip('mmpretrain')

from mmlt.datasets import CIFAR10LT, FashionMNISTLT, ImageNetLT  # noqa: E402


def _write_idx(path, array):
    array = np.asarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(
        f'>{array.ndim}I', *array.shape)
    with gzip.open(path, 'wb') as f:
        f.write(header + array.tobytes())


@pytest.mark.parametrize('color_type,channels', [('color', 3),
                                                 ('grayscale', 1)])
def test_fashion_through_pack_inputs(tmp_path, color_type, channels):
    labels = np.repeat(np.arange(10), 2)
    images = np.arange(20 * 28 * 28).reshape(20, 28, 28) % 251
    for stem in ('train', 't10k'):
        _write_idx(tmp_path / f'{stem}-images-idx3-ubyte.gz', images)
        _write_idx(tmp_path / f'{stem}-labels-idx1-ubyte.gz', labels)
    ds = FashionMNISTLT(
        data_root=str(tmp_path),
        n_max=2,
        imb_factor=2,
        color_type=color_type,
        pipeline=[
            dict(type='mmpretrain.RandomCrop', crop_size=28, padding=4),
            dict(type='mmpretrain.RandomFlip', prob=0.5),
            dict(type='mmpretrain.PackInputs'),
        ])
    packed = ds[0]
    assert tuple(packed['inputs'].shape) == (channels, 28, 28)
    assert int(packed['data_samples'].gt_label) == ds.get_cat_ids(0)[0]


def test_cifar_through_pack_inputs(tmp_path):
    folder = tmp_path / 'cifar-10-batches-py'
    os.makedirs(folder)
    labels = list(range(10)) * 2
    batch = {
        b'data': np.full((20, 3072), 9, np.uint8),
        b'labels': labels,
    }
    for name in [f'data_batch_{i}' for i in range(1, 6)] + ['test_batch']:
        with open(folder / name, 'wb') as f:
            pickle.dump(batch, f)
    ds = CIFAR10LT(
        data_root=str(tmp_path),
        split='test',
        pipeline=[dict(type='mmpretrain.PackInputs')])
    packed = ds[3]
    assert tuple(packed['inputs'].shape) == (3, 32, 32)
    assert int(packed['data_samples'].gt_label) == labels[3]


def test_image_list_through_loading(tmp_path):
    from PIL import Image
    os.makedirs(tmp_path / 'train' / 'n01')
    Image.fromarray(np.full((6, 8, 3), 50, np.uint8)).save(
        tmp_path / 'train' / 'n01' / 'a.png')
    (tmp_path / 'split.txt').write_text('train/n01/a.png 7\n')
    ds = ImageNetLT(
        ann_file='split.txt',
        data_root=str(tmp_path),
        pipeline=[
            dict(type='mmcv.LoadImageFromFile'),
            dict(type='mmpretrain.ResizeEdge', scale=12, edge='short'),
            dict(type='mmpretrain.PackInputs'),
        ])
    packed = ds[0]
    assert tuple(packed['inputs'].shape) == (3, 12, 16)
    assert int(packed['data_samples'].gt_label) == 7
    assert osp.basename(packed['data_samples'].img_path) == 'a.png'
