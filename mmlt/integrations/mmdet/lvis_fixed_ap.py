"""The pieces of LVIS AP-fixed and AP-pool (Dave et al., "Evaluating
Large-Vocabulary Object Detectors: The Devil is in the Details", 2021).

* :class:`TopKPerClassStore`: the budget of AP-fixed, the best ``k``
  detections of every class over the dataset, pruned as results stream in so
  that its memory is bounded by the budget, not by the dataset (the bound is
  in its docstring).
* :func:`matches_by_class`: the per-class matching of the official LVIS
  evaluation (``LVISEval.evaluate``: federated image sets, ignored
  detections), as score / true-positive / false-positive arrays.
* :func:`interpolated_average_precision`: LVIS's 101-point interpolated AP,
  averaged over the IoU thresholds, of one ranked list. Over one class it is
  that class's AP; over the detections of all classes ranked together it is
  AP-pool, which rewards scores that are comparable across classes.
"""
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .per_class_topk import topk_per_class

#: Arrays of one detection each; ``counts``/``heights``/``widths`` hold the
#: mask RLEs (pycocotools' compressed counts and the mask size).
_BOX_FIELDS = ('image_ids', 'labels', 'scores', 'bboxes')
_MASK_FIELDS = ('counts', 'heights', 'widths')


class TopKPerClassStore:
    """The ``k`` highest-scoring detections of every class seen so far.

    Detections are added image by image; when the detections added since the
    last pruning outnumber both a quarter of the kept ones and ``prune_at``,
    every class is cut back to its best ``k`` (ties keep the earlier
    detection, as the LVIS API's stable sort does). With ``F = num_classes *
    k``, the most it keeps, the store so holds at most ``F + max(F // 4,
    prune_at)`` detections, plus those of the image just added: 1.25 ``F``
    once ``F // 4`` exceeds ``prune_at`` (:meth:`merge` holds both stores
    until it prunes). A pruning adds short-lived temporaries on top: a copy
    of the held arrays, the kept subset and the sort's int64 indices (mask
    RLE strings are shared, not copied). A detection's arrays take 36 bytes,
    52 with a mask, plus its RLE string.

    Args:
        k (int): Detections kept per class.
        with_masks (bool): Whether detections carry mask RLEs.
        prune_at (int): Detections that may wait before a pruning. Defaults
            to 1,000,000.
    """

    def __init__(self, k: int, with_masks: bool, prune_at: int = 1_000_000):
        self.k = k
        self.with_masks = with_masks
        self.prune_at = prune_at
        self.image_ids = set()
        self._parts: List[Dict[str, np.ndarray]] = []
        self._num_kept = 0
        self._num_pending = 0

    @property
    def fields(self) -> Tuple[str, ...]:
        return _BOX_FIELDS + (_MASK_FIELDS if self.with_masks else ())

    def add(self,
            image_id: int,
            labels: np.ndarray,
            scores: np.ndarray,
            bboxes: np.ndarray,
            rles: Optional[Sequence[dict]] = None) -> None:
        """Add the detections of one image.

        Args:
            image_id (int): Image id of the annotation file.
            labels (np.ndarray): ``(n,)`` class indices.
            scores (np.ndarray): ``(n,)`` scores.
            bboxes (np.ndarray): ``(n, 4)`` boxes, ``x1, y1, x2, y2``.
            rles (Sequence[dict], optional): ``n`` compressed RLEs
                (``{'size': [h, w], 'counts': bytes}``); needed when
                ``with_masks``.
        """
        if image_id in self.image_ids:  # a sampler's padding repeats images
            return
        self.image_ids.add(image_id)
        n = len(scores)
        part = dict(
            image_ids=np.full(n, image_id, dtype=np.int64),
            labels=np.asarray(labels, dtype=np.int64).reshape(n),
            scores=np.asarray(scores, dtype=np.float32).reshape(n),
            bboxes=np.asarray(bboxes, dtype=np.float32).reshape(n, 4))
        if self.with_masks:
            if rles is None or len(rles) != n:
                raise ValueError(
                    f'TopKPerClassStore(with_masks=True) needs one mask per '
                    f'detection, got {0 if rles is None else len(rles)} '
                    f'masks for {n} boxes')
            counts = np.empty(n, dtype=object)
            counts[:] = [rle['counts'] for rle in rles]
            part['counts'] = counts
            part['heights'] = np.array([rle['size'][0] for rle in rles],
                                       dtype=np.int32).reshape(n)
            part['widths'] = np.array([rle['size'][1] for rle in rles],
                                      dtype=np.int32).reshape(n)
        self._parts.append(part)
        self._num_pending += n
        if self._num_pending > max(self._num_kept // 4, self.prune_at):
            self._prune()

    def _prune(self) -> None:
        merged = self._concatenated()
        keep = topk_per_class(
            torch.from_numpy(merged['scores']),
            torch.from_numpy(merged['labels']), self.k).numpy()
        self._parts = [{name: merged[name][keep] for name in self.fields}]
        self._num_kept = len(keep)
        self._num_pending = 0

    def _concatenated(self) -> Dict[str, np.ndarray]:
        if not self._parts:
            empty = dict(
                image_ids=np.zeros(0, np.int64),
                labels=np.zeros(0, np.int64),
                scores=np.zeros(0, np.float32),
                bboxes=np.zeros((0, 4), np.float32),
                counts=np.zeros(0, object),
                heights=np.zeros(0, np.int32),
                widths=np.zeros(0, np.int32))
            return {name: empty[name] for name in self.fields}
        return {
            name: np.concatenate([part[name] for part in self._parts])
            for name in self.fields
        }

    def merge(self, other: 'TopKPerClassStore') -> None:
        """Add another store's detections (another process's), skipping the
        images this store already has."""
        detections = other.detections()
        fresh = ~np.isin(detections['image_ids'],
                         np.fromiter(self.image_ids, dtype=np.int64))
        self._parts.append({name: detections[name][fresh]
                            for name in self.fields})
        self.image_ids |= other.image_ids
        self._num_pending += int(fresh.sum())
        self._prune()

    def drop(self, image_ids: Iterable[int] = (),
             min_scores: Optional[np.ndarray] = None) -> None:
        """Remove the detections of some images, and those scoring below
        ``min_scores[label]`` (``(num_classes,)``)."""
        detections = self.detections()
        image_ids = np.fromiter(image_ids, dtype=np.int64)
        keep = ~np.isin(detections['image_ids'], image_ids)
        if min_scores is not None:
            keep &= detections['scores'] >= min_scores[detections['labels']]
        self._parts = [{name: detections[name][keep] for name in self.fields}]
        self._num_kept = int(keep.sum())
        self.image_ids -= set(image_ids.tolist())

    def detections(self) -> Dict[str, np.ndarray]:
        """The kept detections, as arrays in the order they were added."""
        if self._num_pending:
            self._prune()
        return self._concatenated()

    def __len__(self) -> int:
        return len(self.detections()['scores'])


def kth_best_scores(scores_per_process: Sequence[Tuple[np.ndarray,
                                                       np.ndarray]],
                    k: int, num_classes: int) -> np.ndarray:
    """The ``k``-th highest score of every class over all processes.

    Every process keeps its own best ``k`` per class; a detection below the
    ``k``-th best of the union cannot be in the dataset's best ``k``, so each
    process can drop it before the stores are gathered (then the main
    process receives about ``num_classes * k`` detections, not that many
    per process).

    Args:
        scores_per_process (Sequence[tuple]): ``(labels (n,), scores (n,))``
            of each process's store.
        k (int): Detections kept per class.
        num_classes (int): Number of classes.

    Returns:
        np.ndarray: ``(num_classes,)`` float32; ``-inf`` for classes with at
        most ``k`` detections.
    """
    labels = np.concatenate([p[0] for p in scores_per_process])
    scores = np.concatenate([p[1] for p in scores_per_process])
    thresholds = np.full(num_classes, -np.inf, dtype=np.float32)
    order = np.lexsort((-scores, labels))  # by label, then score descending
    labels, scores = labels[order], scores[order]
    starts = np.searchsorted(labels, np.arange(num_classes), side='left')
    ends = np.searchsorted(labels, np.arange(num_classes), side='right')
    full = ends - starts > k
    thresholds[full] = scores[starts[full] + k - 1]
    return thresholds


def to_lvis_results(detections: Dict[str, np.ndarray], indices: np.ndarray,
                    category_ids: Sequence[int]) -> List[dict]:
    """LVIS result dicts (``bbox`` as ``x, y, w, h``) of some detections of a
    :class:`TopKPerClassStore`; ``segmentation`` when it has masks."""
    results = []
    with_masks = 'counts' in detections
    for i in indices:
        x1, y1, x2, y2 = (float(v) for v in detections['bboxes'][i])
        result = dict(
            image_id=int(detections['image_ids'][i]),
            category_id=category_ids[int(detections['labels'][i])],
            bbox=[x1, y1, x2 - x1, y2 - y1],
            score=float(detections['scores'][i]))
        if with_masks:
            result['segmentation'] = dict(
                size=[
                    int(detections['heights'][i]),
                    int(detections['widths'][i])
                ],
                counts=detections['counts'][i])
        results.append(result)
    return results


def matches_by_class(
    eval_imgs: Iterable[Optional[dict]]
) -> Dict[int, Tuple[np.ndarray, np.ndarray, np.ndarray, int]]:
    """Per-class ranking material from ``LVISEval.evaluate``.

    As in ``LVISEval.accumulate``: a detection is a true positive at an IoU
    threshold when it matched a ground truth and is not ignored there, a
    false positive when it matched nothing and is not ignored (detections on
    images where the class is not exhaustively annotated, or matched to
    ignored ground truth, are ignored); ground truth counts unless ignored.

    Args:
        eval_imgs (Iterable[dict | None]): ``LVISEval.eval_imgs`` of one area
            range.

    Returns:
        dict[int, tuple]: category id -> ``(scores (n,), tp (T, n) bool,
        fp (T, n) bool, num_gt)``, the detections in image order.
    """
    grouped = {}
    for entry in eval_imgs:
        if entry is None:
            continue
        grouped.setdefault(entry['category_id'], []).append(entry)
    matches = {}
    for category_id, entries in grouped.items():
        scores = np.concatenate(
            [np.asarray(e['dt_scores'], dtype=np.float64) for e in entries])
        matched = np.concatenate([e['dt_matches'] for e in entries], axis=1)
        ignored = np.concatenate([e['dt_ignore'] for e in entries],
                                 axis=1).astype(bool)
        num_gt = int(
            sum(np.count_nonzero(np.asarray(e['gt_ignore']) == 0)
                for e in entries))
        matches[category_id] = (scores, (matched > 0) & ~ignored,
                                (matched == 0) & ~ignored, num_gt)
    return matches


def interpolated_average_precision(scores: np.ndarray,
                                   true_positives: np.ndarray,
                                   false_positives: np.ndarray, num_gt: int,
                                   recall_thresholds: np.ndarray) -> float:
    """101-point interpolated AP of one ranked list, averaged over IoU
    thresholds (the LVIS/COCO definition).

    Detections are ranked by score (ties: earlier first). At each IoU
    threshold, precision ``tp / (tp + fp)`` after every detection is replaced
    by its maximum at equal or higher recall, and read at every recall
    threshold (the first detection reaching it; 0 when never reached); AP is
    the mean over recall and IoU thresholds.

    Args:
        scores (np.ndarray): ``(n,)`` scores.
        true_positives (np.ndarray): ``(T, n)`` bool.
        false_positives (np.ndarray): ``(T, n)`` bool.
        num_gt (int): Ground-truth objects the list should find.
        recall_thresholds (np.ndarray): ``(R,)``, LVIS uses
            ``0, 0.01, ..., 1``.

    Returns:
        float: AP in [0, 1]; nan when ``num_gt`` is 0.
    """
    if num_gt == 0:
        return float('nan')
    order = np.argsort(-np.asarray(scores), kind='mergesort')
    tp = np.cumsum(true_positives[:, order], axis=1, dtype=np.float64)
    fp = np.cumsum(false_positives[:, order], axis=1, dtype=np.float64)
    precisions = np.zeros((tp.shape[0], len(recall_thresholds)))
    for t in range(tp.shape[0]):
        recall = tp[t] / num_gt
        precision = tp[t] / (tp[t] + fp[t] + np.spacing(1))
        envelope = np.maximum.accumulate(precision[::-1])[::-1]
        first = np.searchsorted(recall, recall_thresholds, side='left')
        reached = first < len(recall)
        precisions[t, reached] = envelope[first[reached]]
    return float(precisions.mean())


__all__ = [
    'TopKPerClassStore', 'kth_best_scores', 'to_lvis_results', 'matches_by_class',
    'interpolated_average_precision'
]
