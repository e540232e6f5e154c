"""ImageNet-LT, Places-LT and iNaturalist 2018 from ``path label`` split files.

ImageNet-LT and Places-LT are the splits of Liu et al., "Large-Scale
Long-Tailed Recognition in an Open World" (OLTR, CVPR 2019); iNaturalist 2018
is the species classification challenge set (Van Horn et al., CVPR 2018) in
the list format of Kang et al., "Decoupling Representation and Classifier"
(ICLR 2020). See ``docs/data_preparation.md`` for where to get them.
"""
import os
import os.path as osp
from typing import List, Optional, Union

import numpy as np

from mmlt.registry import DATASETS
from .lt_base import (DATA_PREPARATION_DOC, DatasetFilesNotFoundError,
                      LongTailDataset)

#: How many missing paths the error message shows.
_NUM_PATHS_SHOWN = 5


def _is_local(path: str) -> bool:
    # Object-store prefixes (s3://, petrel://, http://) cannot be stat'ed.
    return '://' not in path


@DATASETS.register_module()
class LongTailImageList(LongTailDataset):
    """A single-label image list: one ``relative/path.jpg label`` per line.

    Each ``data_list`` entry is ``{'img_path': <data_prefix>/<path>,
    'gt_label': int}``, for a pipeline that starts with
    ``LoadImageFromFile``. Paths may contain spaces: the label is the last
    whitespace-separated field of a line; blank lines are skipped.

    Checks, each raising one clear error that points to
    ``docs/data_preparation.md``:

    * the annotation file and the image folder exist
      (:class:`DatasetFilesNotFoundError`, a ``FileNotFoundError``);
    * every line parses and every label lies in ``[0, num_classes)``
      (``ValueError`` with the line number or the bad labels);
    * with ``check_files=True``, every listed image is readable
      (``os.access``): one :class:`DatasetFilesNotFoundError` with the number
      of missing files and the first few paths. This costs one ``stat`` per
      image (a second or two for iNaturalist's 437,513 images on a local
      disk, much longer on a cold network file system; set
      ``check_files=False`` there). It is skipped for remote (``xx://``)
      prefixes.

    Args:
        ann_file (str): The split file, relative to ``data_root`` unless
            absolute.
        data_root (str): Root joined with ``ann_file`` and ``data_prefix``.
            Defaults to ''.
        data_prefix (str | dict): Folder of the images, relative to
            ``data_root``; a str or ``dict(img_path=...)``. Defaults to ''.
        num_classes (int, optional): Number of classes. Defaults to None (the
            dataset's standard number; required for this generic class).
        check_files (bool): Check that every listed image is readable at
            load time. Defaults to True.
        metainfo (dict, optional): ``classes`` may be a list of names or a
            text file with one name per line. Defaults to None (names are
            the class indices as strings).
        **kwargs: Other arguments of :class:`mmengine.dataset.BaseDataset`.
    """

    #: Standard number of classes; None for the generic list.
    NUM_CLASSES: Optional[int] = None

    def __init__(self,
                 ann_file: str,
                 data_root: str = '',
                 data_prefix: Union[str, dict] = '',
                 num_classes: Optional[int] = None,
                 check_files: bool = True,
                 metainfo: Optional[dict] = None,
                 **kwargs):
        if not ann_file:
            raise ValueError(
                f'{type(self).__name__} needs ann_file (a split file with '
                f'"path label" lines); see {DATA_PREPARATION_DOC}')
        if num_classes is None:
            num_classes = self.NUM_CLASSES
        if num_classes is None or int(num_classes) < 1:
            raise ValueError(
                f'{type(self).__name__}: num_classes must be a positive '
                f'integer, got {num_classes!r}')
        self._num_classes = int(num_classes)
        self.check_files = check_files
        if isinstance(data_prefix, str):
            data_prefix = dict(img_path=data_prefix)
        metainfo = dict(metainfo or {})
        metainfo.setdefault('classes',
                            tuple(str(i) for i in range(self._num_classes)))
        super().__init__(
            ann_file=ann_file,
            data_root=data_root,
            data_prefix=data_prefix,
            metainfo=metainfo,
            **kwargs)

    def load_data_list(self) -> List[dict]:
        """Parse the split file and check it against the images.

        Returns:
            list[dict]: ``{'img_path': str, 'gt_label': int}`` per line.
        """
        name = type(self).__name__
        if len(self._metainfo['classes']) != self._num_classes:
            raise ValueError(
                f"{name}: metainfo['classes'] has "
                f"{len(self._metainfo['classes'])} names, expected "
                f'num_classes={self._num_classes}')
        img_root = self.data_prefix.get('img_path', '') or ''
        if _is_local(self.ann_file) and not osp.isfile(self.ann_file):
            raise DatasetFilesNotFoundError(
                f'{name}: split file {self.ann_file} not found (data_root='
                f'{self.data_root!r}); see {DATA_PREPARATION_DOC}')
        if img_root and _is_local(img_root) and not osp.isdir(img_root):
            raise DatasetFilesNotFoundError(
                f'{name}: image folder {img_root} not found (data_root='
                f'{self.data_root!r}, data_prefix={self.data_prefix}); see '
                f'{DATA_PREPARATION_DOC}')

        from mmengine.fileio import get_text
        relative_paths, labels = [], []
        for line_number, line in enumerate(
                get_text(self.ann_file).splitlines(), start=1):
            line = line.strip()
            if not line:
                continue
            fields = line.rsplit(maxsplit=1)
            try:
                if len(fields) != 2:
                    raise ValueError
                label = int(fields[1])
            except ValueError:
                raise ValueError(
                    f'{name}: line {line_number} of {self.ann_file} is '
                    f'{line!r}; expected "relative/path.jpg <int label>"'
                ) from None
            relative_paths.append(fields[0])
            labels.append(label)
        self._check_labels(np.asarray(labels, dtype=np.int64), self.ann_file)

        img_paths = [
            osp.join(img_root, path) if img_root else path
            for path in relative_paths
        ]
        if self.check_files and _is_local(img_root or '.'):
            missing = [p for p in img_paths if not os.access(p, os.R_OK)]
            if missing:
                shown = ', '.join(missing[:_NUM_PATHS_SHOWN])
                raise DatasetFilesNotFoundError(
                    f'{name}: {len(missing)} of {len(img_paths)} images '
                    f'listed in {self.ann_file} are missing or unreadable, '
                    f'e.g. {shown}. Check data_root / data_prefix (see '
                    f'{DATA_PREPARATION_DOC}), or pass check_files=False to '
                    'skip this check.')
        return [
            dict(img_path=path, gt_label=label)
            for path, label in zip(img_paths, labels)
        ]


@DATASETS.register_module()
class ImageNetLT(LongTailImageList):
    """ImageNet-LT (Liu et al., CVPR 2019): 1000 classes, 115,846 training
    images (1280 down to 5 per class), 20,000 validation and 50,000 balanced
    test images; split files ``ImageNet_LT_{train,val,test}.txt`` with paths
    like ``train/n01440764/n01440764_10026.JPEG``.

    See :class:`LongTailImageList` for the arguments and checks.
    """
    NUM_CLASSES = 1000


@DATASETS.register_module()
class PlacesLT(LongTailImageList):
    """Places-LT (Liu et al., CVPR 2019): 365 classes of Places-365, 62,500
    training images (4980 down to 5 per class), 7,300 validation and 36,500
    test images; split files ``Places_LT_{train,val,test}.txt``.

    See :class:`LongTailImageList` for the arguments and checks.
    """
    NUM_CLASSES = 365


@DATASETS.register_module()
class INaturalist2018(LongTailImageList):
    """iNaturalist 2018 (Van Horn et al., CVPR 2018): 8,142 species, 437,513
    training and 24,426 validation images; split files
    ``iNaturalist18_{train,val}.txt`` with paths like
    ``train_val2018/Plantae/7477/3b60c9486db1d2ee875f11a669fbde4a.jpg``.

    See :class:`LongTailImageList` for the arguments and checks.
    """
    NUM_CLASSES = 8142
