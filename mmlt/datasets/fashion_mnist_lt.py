"""Fashion-MNIST-LT: a long-tailed subset of Fashion-MNIST (mmlt's small demo).

Reads the original IDX files (gzip'd or not), e.g. those of the Debian package
``dataset-fashion-mnist`` in ``/usr/share/datasets/fashion-mnist``.
"""
import gzip
import os.path as osp
import struct
from typing import Tuple

import numpy as np

from mmlt.registry import DATASETS
from mmlt.utils.validation import check_choice
from .lt_base import (DATA_PREPARATION_DOC, DatasetFilesNotFoundError,
                      LongTailArrayDataset)

FASHION_MNIST_CLASSES = ('T-shirt/top', 'Trouser', 'Pullover', 'Dress',
                         'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag',
                         'Ankle boot')

# IDX type byte -> numpy dtype (big-endian), from the format description at
# http://yann.lecun.com/exdb/mnist/ ("the magic number").
_IDX_DTYPES = {
    0x08: np.dtype('u1'),
    0x09: np.dtype('i1'),
    0x0B: np.dtype('>i2'),
    0x0C: np.dtype('>i4'),
    0x0D: np.dtype('>f4'),
    0x0E: np.dtype('>f8'),
}


def read_idx_file(path: str) -> np.ndarray:
    """Read an IDX file (MNIST format), gzip-compressed or not.

    The header is two zero bytes, a type byte, a byte with the number of
    dimensions, then one big-endian uint32 per dimension; the data follow.

    Args:
        path (str): Path of the file; gzip is detected from the content.

    Returns:
        np.ndarray: The array with the shape stored in the header.
    """
    with open(path, 'rb') as f:
        raw = f.read()
    if raw[:2] == b'\x1f\x8b':
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f'{path} is not an IDX file: header {raw[:4]!r}, '
                         'expected 0x00 0x00 <type byte> <ndim>')
    dtype = _IDX_DTYPES[raw[2]]
    ndim = raw[3]
    header_size = 4 + 4 * ndim
    shape = struct.unpack(f'>{ndim}I', raw[4:header_size])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header_size != expected:
        raise ValueError(
            f'{path}: header announces shape {shape} ({expected} bytes of '
            f'data), file has {len(raw) - header_size} bytes')
    data = np.frombuffer(raw, dtype=dtype, offset=header_size)
    return data.reshape(shape).astype(dtype.newbyteorder('='))


def _find_idx_file(root: str, stem: str) -> str:
    candidates = [osp.join(root, stem + '.gz'), osp.join(root, stem)]
    for path in candidates:
        if osp.isfile(path):
            return path
    raise DatasetFilesNotFoundError(
        f'Fashion-MNIST file not found: tried {candidates}. Install the '
        "Debian package 'dataset-fashion-mnist' or download the IDX files "
        f'into data_root; see {DATA_PREPARATION_DOC}')


@DATASETS.register_module()
class FashionMNISTLT(LongTailArrayDataset):
    """Fashion-MNIST-LT (mmlt's demo; docs/methods.md, Fashion-MNIST-LT).

    The training split keeps ``n_i = int(n_max * (1 / IF) ** (i / 9))`` images
    of the class of rank ``i``, chosen like LDAM-DRW's CIFAR-LT
    (:class:`LongTailArrayDataset`). The defaults (``n_max=1000,
    imb_factor=100``) give 1000, 599, 359, 215, 129, 77, 46, 27, 16, 10 images
    (2,478; 5 many / 3 medium / 2 few classes). The test split is the
    balanced 10,000-image test set; ``split='val'`` holds out
    ``n_val_per_class`` of the training images that the long-tailed subset
    leaves out (:func:`~mmlt.datasets.lt_base.make_val_indices`).

    Each ``data_list`` entry has ``img`` (uint8; ``HxWx3`` with the gray
    channel replicated when ``color_type='color'``, so standard 3-channel
    backbones and normalisation work; ``HxW`` when ``'grayscale'``, which
    MMPretrain's ``PackInputs`` turns into a 1-channel tensor) and
    ``gt_label`` (int). Images are kept as 28x28 gray arrays in memory and
    expanded to 3 channels on access.

    Args:
        data_root (str): Directory with ``train-images-idx3-ubyte[.gz]``,
            ``train-labels-idx1-ubyte[.gz]``, ``t10k-images-idx3-ubyte[.gz]``
            and ``t10k-labels-idx1-ubyte[.gz]``.
            Defaults to ``'/usr/share/datasets/fashion-mnist'``.
        color_type (str): ``'color'`` (HxWx3) or ``'grayscale'`` (HxW).
            Defaults to ``'color'``.
        **kwargs: ``split``, ``n_max`` (default 1000), ``imb_factor``,
            ``imb_type``, ``class_order``, ``seed``, ``n_val_per_class``,
            ``min_val_per_class``, ``val_seed``
            (:class:`LongTailArrayDataset`) and the arguments of
            :class:`mmengine.dataset.BaseDataset` (``pipeline``,
            ``lazy_init``, ``indices`` ...).
    """

    METAINFO = {'classes': FASHION_MNIST_CLASSES}
    FILE_STEMS = {
        'train': ('train-images-idx3-ubyte', 'train-labels-idx1-ubyte'),
        'test': ('t10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte'),
    }

    DEFAULT_N_MAX = 1000

    def __init__(self,
                 data_root: str = '/usr/share/datasets/fashion-mnist',
                 color_type: str = 'color',
                 **kwargs):
        check_choice('color_type', color_type, ('color', 'grayscale'))
        self.color_type = color_type
        super().__init__(data_root=data_root, **kwargs)

    def read_split(self, split: str) -> Tuple[np.ndarray, np.ndarray]:
        """28x28 gray images and labels of the split's IDX files."""
        image_stem, label_stem = self.FILE_STEMS[split]
        images = read_idx_file(_find_idx_file(self.data_root, image_stem))
        labels = read_idx_file(_find_idx_file(self.data_root, label_stem))
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise ValueError(
                f'{self.data_root}: expected images (N, H, W) and labels (N,),'
                f' got {images.shape} and {labels.shape}')
        return images, labels.astype(np.int64)

    def get_data_info(self, idx: int) -> dict:
        """One entry, with ``img`` expanded to HxWx3 when
        ``color_type='color'``."""
        data_info = super().get_data_info(idx)
        if self.color_type == 'color' and data_info['img'].ndim == 2:
            data_info['img'] = np.repeat(data_info['img'][..., None], 3, -1)
        return data_info
