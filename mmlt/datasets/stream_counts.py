"""Class counts of the stream a sampler draws: the prior the model really sees.

Logit adjustment and ProCo need the class prior of the data the classifier is
trained on. With a re-sampling scheme that is not the annotation file's
prior: repeat-factor sampling (Gupta et al., LVIS, CVPR 2019) repeats an
image ``ceil(r(I))`` times per epoch, ``r(I) = max_c max(1, sqrt(t / f_c))``,
and class-aware sampling (Shen et al., ECCV 2016) draws a class uniformly,
then an image of it. The stream's expected counts per epoch are

    n~_k = sum_i w_i * n_k(i),

with ``w_i`` the expected number of draws of sample ``i`` per epoch and
``n_k(i)`` its number of class-``k`` labels (instances, or 1 per image in
image mode):

* ``ClassBalancedDataset`` (RFS): ``w_i`` = how often ``i`` appears in its
  ``repeat_indices``;
* a sampler with per-class image lists ``cat_dict`` (MMDetection's
  ``ClassAwareSampler``): ``w_i = N / C' * sum_{c : i in cat_dict[c]}
  1 / |cat_dict[c]|`` (``C'`` classes with an image, ``N`` draws per epoch);
* a sampler with an ``expected_draws()`` method (mmlt's class-weighted
  samplers: ``w_i = N * p_c / n_c`` for ``i`` of class ``c``);
* any other sampler (``DefaultSampler``, ``InfiniteSampler``): ``w_i = 1``.
"""
from typing import Optional

import numpy as np

from .dataset_wrappers import scatter_to_leaves


def expected_draws(dataset, sampler=None) -> np.ndarray:
    """Expected draws of each index of ``dataset`` in one epoch of
    ``sampler`` (float64, ``(len(dataset),)``); see the module docstring."""
    size = len(dataset)
    cat_dict = getattr(sampler, 'cat_dict', None)
    if cat_dict is not None:  # MMDetection's ClassAwareSampler
        lists = [np.asarray(v, dtype=np.int64) for v in cat_dict.values()
                 if len(v)]
        weights = np.zeros(size)
        for images in lists:
            np.add.at(weights, images, 1.0 / len(images))
        # per epoch: total_size draws (len(dataset) in MMDetection's, a
        # repeat-factor epoch in mmlt.RFSMatchedClassAwareSampler)
        return weights * getattr(sampler, 'total_size', size) / len(lists)
    if callable(getattr(sampler, 'expected_draws', None)):
        return np.asarray(sampler.expected_draws(), dtype=np.float64)
    return np.ones(size)


def sample_labels(leaf, idx: int) -> np.ndarray:
    """Labels of sample ``idx``: ``leaf.sample_labels(idx)`` when the dataset
    defines it (one entry per instance, e.g. LVIS), else ``get_cat_ids``."""
    if callable(getattr(leaf, 'sample_labels', None)):
        return np.asarray(leaf.sample_labels(idx), dtype=np.int64)
    return np.asarray(leaf.get_cat_ids(idx), dtype=np.int64)


def loader_sampler(loader):
    """The sampler that decides which indices a DataLoader draws.

    With a batch sampler in the config (MMDetection's
    ``AspectRatioBatchSampler``) MMEngine builds the loader with
    ``sampler=None``, and torch then puts a ``SequentialSampler`` in
    ``loader.sampler``: the real one is ``loader.batch_sampler.sampler``.
    Without one, torch's ``BatchSampler`` wraps the configured sampler, so
    the same attribute finds it.
    """
    batch_sampler = getattr(loader, 'batch_sampler', None)
    sampler = getattr(batch_sampler, 'sampler', None)
    return sampler if sampler is not None else getattr(
        loader, 'sampler', None)


def stream_class_counts(dataset,
                        sampler=None,
                        num_classes: Optional[int] = None) -> np.ndarray:
    """Expected class counts of one epoch of ``sampler`` over ``dataset``.

    Args:
        dataset: The training dataset (wrappers included) the sampler indexes.
        sampler (optional): The training sampler; None or an unknown one
            draws every index once.
        num_classes (int, optional): Length of the result; by default the
            number of classes in the leaf datasets' metainfo.

    Returns:
        np.ndarray: float64 counts, one per class.
    """
    leaves = scatter_to_leaves(dataset, expected_draws(dataset, sampler))
    if num_classes is None:
        num_classes = max(
            len((getattr(leaf, 'metainfo', None) or {}).get('classes', ())
                or ()) for leaf, _ in leaves.values())
    counts = np.zeros(num_classes)
    for leaf, weights in leaves.values():
        for idx in np.flatnonzero(weights):
            labels = sample_labels(leaf, int(idx))
            if labels.size and labels.max() >= counts.size:
                counts = np.pad(counts, (0, labels.max() + 1 - counts.size))
            np.add.at(counts, labels, weights[idx])
    return counts

