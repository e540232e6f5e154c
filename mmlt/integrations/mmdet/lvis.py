"""LVIS class priors from the annotation file.

LVIS (Gupta et al., CVPR 2019) groups its categories by the number of
training *images* they appear in: rare (1-10), common (11-100) and frequent
(>100). The priors that logit adjustment and ProCo need can be counted either
by images or by instances (annotations); for losses on RoIs, whose labels are
instances, the instance counts are the natural prior.
"""
from typing import Dict, List, Sequence

import numpy as np
from mmdet.datasets import LVISV1Dataset

from mmlt.datasets.seeded_dataset import SeededItems
from mmlt.registry import DATASETS
from mmlt.utils.validation import check_choice

COUNT_MODES = ('instance', 'image')


def _check_mode(mode: str) -> None:
    """``'instance'`` counts annotations, ``'image'`` images that contain
    the category."""
    check_choice('mode', mode, COUNT_MODES)


def counts_from_category_image_map(category_images: Dict[int, Sequence[int]],
                                   category_ids: Sequence[int],
                                   mode: str = 'instance') -> np.ndarray:
    """Per-category counts from ``category id -> image id of each annotation``.

    This is the ``cat_img_map`` of the LVIS API (one image id per annotation,
    so an image with three mugs lists its id three times).

    Args:
        category_images (dict[int, Sequence[int]]): Image id of every
            annotation, per category id.
        category_ids (Sequence[int]): Category ids in label order.
        mode (str): ``'instance'`` (annotations) or ``'image'`` (distinct
            images). Defaults to ``'instance'``.

    Returns:
        np.ndarray: int64 counts ``(len(category_ids),)`` in label order.
    """
    _check_mode(mode)
    counts = np.zeros(len(category_ids), dtype=np.int64)
    for label, category_id in enumerate(category_ids):
        image_ids = category_images.get(category_id, ())
        counts[label] = len(image_ids) if mode == 'instance' else len(
            set(image_ids))
    return counts


@DATASETS.register_module()
class LVISV1WithClassCounts(SeededItems, LVISV1Dataset):
    """MMDetection's ``LVISV1Dataset`` with a ``class_counts`` attribute.

    :class:`mmlt.ClassCountsHook` reads ``class_counts`` (through
    ``ClassBalancedDataset`` and other wrappers) and gives it to every loss
    with ``set_class_counts``: the prior of ProCo and logit adjustment. The
    counts come from the annotation file that the dataset has just parsed
    (the LVIS API's ``cat_img_map``), so nothing is read twice; they are the
    counts of the file, not of the repeat-factor-resampled stream.

    Args:
        class_counts_mode (str): ``'instance'`` (annotations per category) or
            ``'image'`` (images per category). Defaults to ``'instance'``.
        **kwargs: Arguments of ``LVISV1Dataset``.
    """

    def __init__(self, *args, class_counts_mode: str = 'instance', **kwargs):
        _check_mode(class_counts_mode)
        self.class_counts_mode = class_counts_mode
        self._class_counts = None
        super().__init__(*args, **kwargs)

    def load_data_list(self) -> List[dict]:
        data_list = super().load_data_list()
        self._class_counts = counts_from_category_image_map(
            self.cat_img_map, self.cat_ids, self.class_counts_mode)
        return data_list

    def sample_labels(self, idx: int) -> np.ndarray:
        """Labels of image ``idx`` as counted by ``class_counts_mode``: one
        per non-ignored instance (``'instance'``) or each category once
        (``'image'``). The per-image counts behind
        ``ClassCountsHook(prior='stream')``."""
        labels = np.array([
            inst['bbox_label']
            for inst in self.get_data_info(idx)['instances']
            if not inst.get('ignore_flag', 0)
        ], dtype=np.int64)
        return labels if self.class_counts_mode == 'instance' else \
            np.unique(labels)

    @property
    def class_counts(self) -> np.ndarray:
        """int64 counts per class, in label order."""
        if self._class_counts is None:
            self.full_init()
        return self._class_counts
