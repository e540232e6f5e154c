"""CIFAR-10-LT and CIFAR-100-LT (Cao et al., "LDAM-DRW", NeurIPS 2019).

Read from the standard CIFAR python archives: the extracted folder
(``cifar-10-batches-py/`` or ``cifar-100-python/``) or the ``.tar.gz`` itself.
"""
import os.path as osp
import pickle
import tarfile
from typing import Dict, List, Tuple

import numpy as np

from mmlt.registry import DATASETS
from .lt_base import (DATA_PREPARATION_DOC, DatasetFilesNotFoundError,
                      LongTailArrayDataset)

CIFAR10_CLASSES = ('airplane', 'automobile', 'bird', 'cat', 'deer', 'dog',
                   'frog', 'horse', 'ship', 'truck')

# The fine label names of CIFAR-100, in label order (alphabetical).
CIFAR100_CLASSES = (
    'apple', 'aquarium_fish', 'baby', 'bear', 'beaver', 'bed', 'bee', 'beetle',
    'bicycle', 'bottle', 'bowl', 'boy', 'bridge', 'bus', 'butterfly', 'camel',
    'can', 'castle', 'caterpillar', 'cattle', 'chair', 'chimpanzee', 'clock',
    'cloud', 'cockroach', 'couch', 'crab', 'crocodile', 'cup', 'dinosaur',
    'dolphin', 'elephant', 'flatfish', 'forest', 'fox', 'girl', 'hamster',
    'house', 'kangaroo', 'keyboard', 'lamp', 'lawn_mower', 'leopard', 'lion',
    'lizard', 'lobster', 'man', 'maple_tree', 'motorcycle', 'mountain',
    'mouse', 'mushroom', 'oak_tree', 'orange', 'orchid', 'otter', 'palm_tree',
    'pear', 'pickup_truck', 'pine_tree', 'plain', 'plate', 'poppy',
    'porcupine', 'possum', 'rabbit', 'raccoon', 'ray', 'road', 'rocket',
    'rose', 'sea', 'seal', 'shark', 'shrew', 'skunk', 'skyscraper', 'snail',
    'snake', 'spider', 'squirrel', 'streetcar', 'sunflower', 'sweet_pepper',
    'table', 'tank', 'telephone', 'television', 'tiger', 'tractor', 'train',
    'trout', 'tulip', 'turtle', 'wardrobe', 'whale', 'willow_tree', 'wolf',
    'woman', 'worm')


class _CIFARLT(LongTailArrayDataset):
    """Reader of the CIFAR-LT datasets.

    The training split is LDAM-DRW's long-tailed subset
    (:class:`LongTailArrayDataset`; CIFAR-100-LT IF 100: 10,847 images,
    CIFAR-10-LT IF 100: 12,406); the test split is the full balanced
    10,000-image test set. ``split='val'`` holds out ``n_val_per_class``
    training images per class that the long-tailed subset leaves out; at
    the full ``n_max`` the head class has none left, so set
    ``min_val_per_class=0`` (the split then covers the other classes).
    ``img`` is a 32x32x3 uint8 array in RGB order (as in MMPretrain's CIFAR
    datasets: configs use ``to_rgb=False``), ``gt_label`` an int.

    Args:
        data_root (str): Directory that holds the extracted archive folder
            (``cifar-10-batches-py`` / ``cifar-100-python``), the
            ``.tar.gz`` archive, or is the extracted folder itself.
        n_max (int, optional): Images of the largest class. Defaults to None
            (all training images of a class: 5000 / 500).
        **kwargs: ``split``, ``imb_factor``, ``imb_type``, ``class_order``,
            ``seed``, ``n_val_per_class``, ``min_val_per_class``,
            ``val_seed`` (:class:`LongTailArrayDataset`) and the arguments of
            :class:`mmengine.dataset.BaseDataset`.
    """

    # Set by subclasses.
    FOLDER: str = ''
    ARCHIVE: str = ''
    FILES: Dict[str, List[str]] = {}
    LABEL_KEY: bytes = b''

    def read_split(self, split: str) -> Tuple[np.ndarray, np.ndarray]:
        """Images (N, 32, 32, 3) uint8 RGB and labels (N,) of the split."""
        names = self.FILES[split]
        root = self.data_root
        folder = next((d for d in (osp.join(root, self.FOLDER), root)
                       if osp.isfile(osp.join(d, names[0]))), None)
        archive = osp.join(root, self.ARCHIVE)
        if folder is not None:
            batches = []
            for name in names:
                path = osp.join(folder, name)
                if not osp.isfile(path):
                    raise DatasetFilesNotFoundError(
                        f'{path} is missing; see {DATA_PREPARATION_DOC}')
                with open(path, 'rb') as f:
                    batches.append(pickle.load(f, encoding='bytes'))
        elif osp.isfile(archive):
            with tarfile.open(archive, 'r:*') as tar:
                batches = []
                for name in names:
                    member = f'{self.FOLDER}/{name}'
                    try:
                        f = tar.extractfile(member)
                    except KeyError:
                        f = None
                    if f is None:
                        raise DatasetFilesNotFoundError(
                            f'{archive} has no member {member}; see '
                            f'{DATA_PREPARATION_DOC}')
                    batches.append(pickle.load(f, encoding='bytes'))
        else:
            raise DatasetFilesNotFoundError(
                f'{type(self).__name__}: found neither '
                f'{osp.join(root, self.FOLDER, names[0])}, '
                f'{osp.join(root, names[0])} nor {archive}; see '
                f'{DATA_PREPARATION_DOC}')
        images = np.concatenate(
            [np.asarray(b[b'data'], dtype=np.uint8) for b in batches])
        labels = np.concatenate(
            [np.asarray(b[self.LABEL_KEY], dtype=np.int64) for b in batches])
        if images.ndim != 2 or images.shape[1] != 3 * 32 * 32 or len(
                images) != len(labels):
            raise ValueError(
                f'{type(self).__name__}: expected data (N, 3072) and '
                f'{len(images)} labels, got {images.shape} and '
                f'{labels.shape}')
        # Rows are 1024 red, 1024 green, 1024 blue values, row-major.
        images = images.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        return np.ascontiguousarray(images), labels


@DATASETS.register_module()
class CIFAR10LT(_CIFARLT):
    __doc__ = _CIFARLT.__doc__.replace(
        'Reader of the CIFAR-LT datasets.',
        'CIFAR-10-LT (10 classes, 5000 training images per class in the '
        'full set).')
    METAINFO = {'classes': CIFAR10_CLASSES}
    FOLDER = 'cifar-10-batches-py'
    ARCHIVE = 'cifar-10-python.tar.gz'
    FILES = {
        'train': [f'data_batch_{i}' for i in range(1, 6)],
        'test': ['test_batch'],
    }
    LABEL_KEY = b'labels'
    DEFAULT_N_MAX = 5000


@DATASETS.register_module()
class CIFAR100LT(_CIFARLT):
    __doc__ = _CIFARLT.__doc__.replace(
        'Reader of the CIFAR-LT datasets.',
        'CIFAR-100-LT (100 fine classes, 500 training images per class in '
        'the full set; IF 100 gives 35 many / 35 medium / 30 few classes).')
    METAINFO = {'classes': CIFAR100_CLASSES}
    FOLDER = 'cifar-100-python'
    ARCHIVE = 'cifar-100-python.tar.gz'
    FILES = {'train': ['train'], 'test': ['test']}
    LABEL_KEY = b'fine_labels'
    DEFAULT_N_MAX = 500
