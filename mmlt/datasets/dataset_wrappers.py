"""The one walker over MMEngine's and torch's dataset wrappers.

A wrapper's index ``i`` is an index of one of the datasets it wraps:

* ``ConcatDataset`` (MMEngine's, torch's; anything with ``datasets``):
  indices ``[begin, end)`` are the indices of one child, in order;
* ``ClassBalancedDataset`` (``repeat_indices``): ``i -> repeat_indices[i]``;
* ``RepeatDataset`` (``times`` and ``dataset``): ``i -> i % len(inner)``;
* torch's ``Subset`` (``indices`` and ``dataset``): ``i -> indices[i]``;
* :class:`mmlt.SeededDataset`: ``i -> i``.

:func:`index_parts` says that for one level; :func:`unwrap_dataset`,
:func:`gather_from_leaves` (a value per index, read from the leaves) and
:func:`scatter_to_leaves` (a weight per index, summed onto the leaves' indices)
walk the whole tree with it.
"""
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np


def index_parts(dataset) -> Optional[List[Tuple[object, int, int,
                                                Optional[np.ndarray]]]]:
    """One level of a wrapper: ``(child, begin, end, index)`` per child.

    Indices ``[begin, end)`` of ``dataset`` are indices ``index`` of
    ``child`` (``index`` None: ``0 .. end - begin``, a concatenation). None
    when ``dataset`` is not an indexing wrapper (a leaf).
    """
    if hasattr(dataset, 'datasets'):  # ConcatDataset
        _full_init(dataset)
        starts = [0] + list(getattr(dataset, 'cumulative_sizes', []))
        if len(starts) != len(dataset.datasets) + 1:
            starts = list(np.cumsum([0] + [len(d) for d in dataset.datasets]))
        return [(child, int(begin), int(end), None) for child, begin, end in
                zip(dataset.datasets, starts, starts[1:])]
    if not hasattr(dataset, 'dataset'):
        return None
    if getattr(dataset, 'same_indices_as_dataset', False):  # SeededDataset
        return [(dataset.dataset, 0, len(dataset), None)]
    if hasattr(dataset, 'repeat_indices'):  # ClassBalancedDataset
        _full_init(dataset)
        index = np.asarray(dataset.repeat_indices, dtype=np.int64)
    elif hasattr(dataset, 'times'):  # RepeatDataset
        _full_init(dataset)
        index = np.arange(len(dataset)) % len(dataset.dataset)
    elif hasattr(dataset, 'indices'):  # torch's Subset
        index = np.asarray(dataset.indices, dtype=np.int64)
    else:
        return None
    return [(dataset.dataset, 0, len(index), index)]


def _full_init(dataset) -> None:
    if callable(getattr(dataset, 'full_init', None)):
        dataset.full_init()


def unwrap_dataset(dataset) -> Iterator:
    """Yield the leaf datasets of a wrapper, once per occurrence (any
    ``dataset``/``datasets`` wrapper is unwrapped, indexing or not)."""
    if hasattr(dataset, 'datasets'):  # ConcatDataset
        for child in dataset.datasets:
            yield from unwrap_dataset(child)
    elif hasattr(dataset, 'dataset'):  # RepeatDataset, ClassBalancedDataset
        yield from unwrap_dataset(dataset.dataset)
    else:
        yield dataset


def gather_from_leaves(dataset,
                       leaf_values: Callable[[object], np.ndarray],
                       empty: np.ndarray) -> np.ndarray:
    """``leaf_values(leaf)`` (one entry per leaf index) read through the
    wrappers: one entry per index of ``dataset``; ``empty`` for a
    concatenation of nothing."""
    parts = index_parts(dataset)
    if parts is None:
        return leaf_values(dataset)
    values = [gather_from_leaves(child, leaf_values, empty)
              for child, _, _, _ in parts]
    if parts and parts[0][3] is not None:  # an index map
        return values[0][parts[0][3]]
    return np.concatenate(values) if values else empty


def scatter_to_leaves(dataset, weights: np.ndarray,
                      out: Optional[Dict[int, tuple]] = None
                      ) -> Dict[int, tuple]:
    """Push per-index ``weights`` of ``dataset`` down to its leaf datasets.

    Returns ``{id(leaf): (leaf, weights of the leaf's indices)}``; a leaf met
    twice gets the sum.
    """
    out = {} if out is None else out
    parts = index_parts(dataset)
    if parts is None:
        key = id(dataset)
        if key in out:
            out[key] = (dataset, out[key][1] + weights)
        else:
            out[key] = (dataset, weights)
        return out
    for child, begin, end, index in parts:
        if index is None:
            scatter_to_leaves(child, weights[begin:end], out)
        else:
            scatter_to_leaves(
                child,
                np.bincount(index, weights=weights, minlength=len(child)),
                out)
    return out
