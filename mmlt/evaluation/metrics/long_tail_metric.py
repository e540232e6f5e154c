"""Top-1 accuracy overall and on the many / medium / few-shot class groups."""
import csv
import os
import os.path as osp
from collections.abc import Mapping
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import torch
from mmengine.evaluator import BaseMetric

from mmlt.engine.protocols import NeedsOutDir
from mmlt.registry import METRICS
# shared with the heads (which must not import evaluation code); re-exported
from mmlt.utils.class_groups import GROUP_NAMES, split_classes_by_count


def _field(sample, key: str):
    """``sample[key]`` for dicts (``DataSample.to_dict()``), else the
    attribute; None when absent."""
    if isinstance(sample, Mapping):
        return sample.get(key)
    return getattr(sample, key, None)


def _first_int(value) -> int:
    return int(torch.as_tensor(value).reshape(-1)[0])


@METRICS.register_module()
class LongTailAccuracy(BaseMetric, NeedsOutDir):
    """Accuracy overall and on the many / medium / few-shot classes.

    Reported (in percent, like MMPretrain's ``Accuracy``), with the prefix
    ``lt/``:

    * ``top1`` (and ``top{k}`` for every other ``k`` in ``topk``): sample
      accuracy over the whole evaluation set;
    * ``many``, ``medium``, ``few``: the mean of the per-class top-1
      accuracies of the classes in the group (as in OLTR and Decoupling;
      equal to the sample accuracy of the group on a balanced test set).
      Groups come from the training counts: ``many`` has more than
      ``many_threshold`` images, ``few`` fewer than ``few_threshold``,
      ``medium`` the rest (both thresholds inclusive). A group without
      classes, or whose classes have no evaluation samples, reports ``nan``.
      Classes without evaluation samples are left out of the group means.

    ``out_file``: a CSV with one row per class, columns ``class_index,
    class_name, train_count, test_count, correct, accuracy, group``
    (``accuracy`` in percent, empty when the class has no evaluation sample);
    ``tools/analysis_tools/plot_per_class_acc.py`` plots it. Class names come
    from ``dataset_meta['classes']`` of the evaluated dataset when set.

    ``process`` reads, for each data sample (a dict such as MMPretrain's
    ``DataSample.to_dict()``, or an object with these attributes):
    ``gt_label`` and ``pred_score`` (C scores; used when present) or
    ``pred_label``. Top-k with ``k > 1`` needs ``pred_score``.

    Args:
        class_counts (Sequence[int], optional): Training images per class.
        train_dataset (dict | Dataset, optional): Instead of
            ``class_counts``: the training dataset (config or object); its
            ``class_counts`` (or labels) are read once at construction.
        many_threshold (int): Defaults to 100.
        few_threshold (int): Defaults to 20.
        topk (int | Sequence[int]): Sample accuracies to report. Defaults to
            1.
        out_file (str | bool, optional): Path of the per-class CSV, written
            on the main process at every evaluation. Defaults to None: the
            file is ``per_class_accuracy.csv`` in the runner's work dir when
            :class:`mmlt.MetricOutDirHook` is used (it calls
            :meth:`set_out_dir`), no file otherwise. False: never write.
        collect_device (str): ``'cpu'`` or ``'gpu'``. Defaults to ``'cpu'``.
        prefix (str, optional): Defaults to None (``'lt'``).
    """

    default_prefix: Optional[str] = 'lt'

    def __init__(self,
                 class_counts: Optional[Sequence[int]] = None,
                 train_dataset: Union[dict, object, None] = None,
                 many_threshold: int = 100,
                 few_threshold: int = 20,
                 topk: Union[int, Sequence[int]] = 1,
                 out_file: Optional[str] = None,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        if (class_counts is None) == (train_dataset is None):
            raise ValueError(
                'LongTailAccuracy needs exactly one of class_counts (a list '
                'of training images per class) and train_dataset, got '
                f'class_counts={class_counts!r}, '
                f'train_dataset={train_dataset!r}')
        if class_counts is None:
            class_counts = self._counts_of_dataset(train_dataset)
        counts = np.asarray(class_counts)
        if counts.ndim != 1 or len(counts) == 0 or (counts < 0).any():
            raise ValueError('class_counts must be a non-empty list of '
                             f'non-negative counts, got {class_counts!r}')
        self.class_counts = counts.astype(np.int64)
        self.groups = split_classes_by_count(self.class_counts,
                                             many_threshold, few_threshold)
        self.many_threshold = many_threshold
        self.few_threshold = few_threshold
        topk = (topk, ) if isinstance(topk, int) else tuple(topk)
        if not topk or any(int(k) != k or k < 1 for k in topk):
            raise ValueError(
                f'topk must be positive integers, got {topk!r}')
        self.topk = tuple(sorted(set(int(k) for k in topk) | {1}))
        self.out_file = out_file

    @property
    def num_classes(self) -> int:
        """int: Number of classes, ``len(class_counts)``."""
        return len(self.class_counts)

    @staticmethod
    def _counts_of_dataset(dataset) -> np.ndarray:
        from mmlt.datasets.lt_base import class_counts
        if isinstance(dataset, Mapping):
            from mmlt.registry import DATASETS
            dataset = DATASETS.build(dict(dataset))
        return class_counts(dataset)

    def process(self, data_batch, data_samples: Sequence) -> None:
        """Keep the ground truth and the top-k predicted labels of each
        sample.

        Args:
            data_batch: Unused.
            data_samples (Sequence[dict | DataSample]): Model outputs.
        """
        max_k = max(self.topk)
        for sample in data_samples:
            gt_label = _field(sample, 'gt_label')
            if gt_label is None:
                raise ValueError('LongTailAccuracy needs gt_label in every '
                                 f'data sample, got keys of {type(sample)}')
            pred_score = _field(sample, 'pred_score')
            pred_label = _field(sample, 'pred_label')
            if pred_score is not None:
                pred_score = torch.as_tensor(pred_score).reshape(-1)
                if max_k > pred_score.numel():
                    raise ValueError(
                        f'topk={self.topk} needs at least {max_k} scores, got '
                        f'{pred_score.numel()}')
                # Scores win over pred_label, as in MMPretrain's Accuracy.
                top_labels = pred_score.topk(max_k).indices
            elif pred_label is not None:
                if max_k > 1:
                    raise ValueError(
                        f'topk={self.topk} needs pred_score; the data sample '
                        'has only pred_label')
                top_labels = torch.as_tensor([_first_int(pred_label)])
            else:
                raise ValueError('LongTailAccuracy needs pred_score or '
                                 'pred_label in every data sample')
            self.results.append(
                dict(
                    gt_label=_first_int(gt_label),
                    top_labels=top_labels.detach().cpu().long()))

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        """Overall, per-group and per-class accuracy.

        Args:
            results (list[dict]): Collected outputs of :meth:`process`.

        Returns:
            dict[str, float]: ``top1`` (``top{k}``), ``many``, ``medium``,
            ``few``, in percent.
        """
        if not results:
            raise ValueError('LongTailAccuracy got no evaluation samples')
        gt_labels = torch.tensor([r['gt_label'] for r in results])
        top_labels = torch.stack([r['top_labels'] for r in results])
        if gt_labels.min() < 0 or gt_labels.max() >= self.num_classes:
            raise ValueError(
                f'gt_label {int(gt_labels.max())} (or {int(gt_labels.min())})'
                f' is outside the {self.num_classes} classes of class_counts')
        hits = top_labels == gt_labels[:, None]

        metrics = {}
        for k in self.topk:
            metrics[f'top{k}'] = float(100.0 *
                                       hits[:, :k].any(1).double().mean())

        gt_np = gt_labels.numpy()
        correct = np.bincount(
            gt_np, weights=hits[:, 0].numpy().astype(np.float64),
            minlength=self.num_classes)
        test_counts = np.bincount(gt_np, minlength=self.num_classes)
        with np.errstate(invalid='ignore', divide='ignore'):
            class_accuracy = np.where(test_counts > 0,
                                      100.0 * correct / test_counts, np.nan)
        for group in GROUP_NAMES:
            accuracies = class_accuracy[(self.groups == group)
                                        & (test_counts > 0)]
            metrics[group] = float(
                accuracies.mean()) if len(accuracies) else float('nan')

        out_file = self.out_file
        if out_file is None and getattr(self, 'out_dir', None):
            out_file = osp.join(self.out_dir, 'per_class_accuracy.csv')
        if out_file:
            self._write_csv(out_file, class_accuracy, test_counts, correct)
        return metrics

    def set_out_dir(self, out_dir: str) -> None:
        """Where the per-class CSV goes when ``out_file`` is None."""
        self.out_dir = out_dir

    def _write_csv(self, out_file: str, class_accuracy: np.ndarray,
                   test_counts: np.ndarray, correct: np.ndarray) -> None:
        names = list((self.dataset_meta or {}).get('classes') or [])
        if len(names) != self.num_classes:
            names = [str(i) for i in range(self.num_classes)]
        directory = osp.dirname(osp.abspath(out_file))
        os.makedirs(directory, exist_ok=True)
        with open(out_file, 'w', newline='') as f:
            writer = csv.writer(f)
            writer.writerow([
                'class_index', 'class_name', 'train_count', 'test_count',
                'correct', 'accuracy', 'group'
            ])
            for c in range(self.num_classes):
                accuracy = '' if np.isnan(class_accuracy[c]) else \
                    f'{class_accuracy[c]:.4f}'
                writer.writerow([
                    c, names[c],
                    int(self.class_counts[c]),
                    int(test_counts[c]),
                    int(correct[c]), accuracy, self.groups[c]
                ])


__all__ = ['LongTailAccuracy', 'split_classes_by_count', 'GROUP_NAMES']
