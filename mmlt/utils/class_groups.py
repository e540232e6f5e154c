"""The many / medium / few-shot class groups of long-tailed recognition.

Shared by :class:`mmlt.LongTailAccuracy` and the heads that report
per-group statistics (FixMatch's pseudo-label accuracy), so that no model
imports evaluation code.
"""
from typing import Sequence

import numpy as np

GROUP_NAMES = ('many', 'medium', 'few')


def split_classes_by_count(class_counts: Sequence[int],
                           many_threshold: int = 100,
                           few_threshold: int = 20) -> np.ndarray:
    """Group of each class by its number of training images.

    ``many``: ``n_c > many_threshold``; ``few``: ``n_c < few_threshold``;
    ``medium``: ``few_threshold <= n_c <= many_threshold`` (Liu et al.,
    "Large-Scale Long-Tailed Recognition in an Open World", CVPR 2019).

    Args:
        class_counts (Sequence[int]): Training images per class.
        many_threshold (int): Defaults to 100.
        few_threshold (int): Defaults to 20.

    Returns:
        np.ndarray: Group name (str) per class.
    """
    if few_threshold > many_threshold:
        raise ValueError(
            f'few_threshold ({few_threshold}) must not exceed many_threshold '
            f'({many_threshold})')
    counts = np.asarray(class_counts)
    return np.where(counts > many_threshold, 'many',
                    np.where(counts < few_threshold, 'few', 'medium'))


__all__ = ['GROUP_NAMES', 'split_classes_by_count']
