"""LVIS AP with the standard per-image cap, AP-fixed and AP-pool."""
import copy
import csv
import os
import os.path as osp
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from mmdet.evaluation.metrics import LVISMetric
from mmdet.structures.mask import encode_mask_results
from mmengine.dist import (all_gather_object, broadcast_object_list,
                           collect_results, get_rank, get_world_size,
                           is_main_process)
from mmengine.logging import MMLogger

from mmlt.engine.protocols import HasStandardAPMode, NeedsOutDir
from mmlt.evaluation.per_class_plot import plot_per_class_ap
from mmlt.registry import METRICS
from mmlt.utils.validation import check_choice, check_int, check_number
from .lvis_fixed_ap import (TopKPerClassStore, interpolated_average_precision,
                            kth_best_scores, matches_by_class,
                            to_lvis_results)

AP_TYPES = ('standard', 'fixed', 'pool')
FREQUENCIES = ('r', 'c', 'f')
PER_CLASS_FILE = 'lvis_per_class_ap.csv'
# LVISMetric's options that the standard path's evaluators take over.
_PASSED_OPTIONS = ('proposal_nums', 'iou_thrs', 'metric_items', 'format_only',
                   'outfile_prefix', 'backend_args')


class _SingleMetricLVIS(LVISMetric):
    """MMDetection's ``LVISMetric`` for one metric of a
    :class:`LVISFixedMetric`, on the annotations that one already loaded.

    The standard path evaluates each metric on its own: ``LVISMetric`` names
    the per-class AP keys without the metric, so ``bbox`` and ``segm`` in one
    call would overwrite each other's.
    """

    def __init__(self, lvis_api, metric: str, **kwargs) -> None:
        super().__init__(ann_file=None, metric=metric, **kwargs)
        self._lvis_api = lvis_api
        self.cat_ids = lvis_api.get_cat_ids()
        self.img_ids = lvis_api.get_img_ids()


def _cell(column: str, value: float) -> str:
    """A CSV cell: empty for nan, counts as integers, AP to 4 decimals."""
    if np.isnan(value):
        return ''
    return str(int(value)) if column.endswith('_dets') else f'{value:.4f}'


@METRICS.register_module()
class LVISFixedMetric(LVISMetric, NeedsOutDir, HasStandardAPMode):
    """MMDetection's ``LVISMetric`` plus AP-fixed and AP-pool (Dave et al.,
    "Evaluating Large-Vocabulary Object Detectors: The Devil is in the
    Details", 2021), for boxes and masks.

    * ``standard``: LVIS AP exactly as ``LVISMetric`` computes it (its own
      code path): at most ``max_dets_per_img`` (300) detections per image,
      ranked per class. Keys ``{bbox,segm}_AP``, ``_AP50``, ... ``_APf``.
      Because the cap is shared by all classes of an image, the AP of one
      class depends on how its scores compare with other classes' scores.
    * ``fixed``: no per-image cap; each class keeps its ``dets_per_class``
      (10,000 on LVIS) best detections over the whole dataset, then the
      official per-class evaluation runs (federated: only images with the
      class or listing it in ``neg_category_ids`` count; unmatched
      detections where it is in ``not_exhaustive_category_ids`` are
      ignored; IoU 0.5:0.95, 101 recall points, area 'all'). Keys
      ``{bbox,segm}_fixed_{AP,APr,APc,APf}``. A class's AP-fixed depends
      only on the order of its own scores, so it is unchanged by a per-class
      monotone change of the scores *of the detections it receives*: the
      model must not drop a class's detections by a rule that depends on
      other classes or on a global score threshold. Produce them as Dave et
      al. do, with :class:`mmlt.PerClassTopKRoIHead` and ``dets_per_class``
      (per-class thresholds, a floor of 1e-7, no per-image cap). A class
      with fewer than ``dets_per_class`` detections is listed in a warning
      (its list was cut by the model's floor or caps; a score change can
      then move detections across the cut) and its count is in the
      per-class CSV. A logit shift of one class in a softmax classifier is
      monotone for that class; it rescales the other classes' scores of
      each RoI by a factor near 1 that depends on the RoI, which can reorder
      their near-ties.
    * ``pool``: the same detections and matches, but one ranking of all
      classes together (and of the r, c, f classes), so it rewards scores
      that are calibrated across classes. Keys ``{bbox,segm}_pool_
      {AP,APr,APc,APf}``.

    ``process`` keeps only the detections above ``standard_score_thr`` and
    then the ``max_dets_per_img`` best of each image for the standard path
    (MMDetection's 1e-4 and 300 make it ``LVISMetric``'s AP, whatever floor
    the model used), and streams all detections into a per-class budget
    (:class:`TopKPerClassStore`, which states the bound), so memory follows
    ``num_classes * dets_per_class`` detections per IoU type, not the
    dataset's size (with several processes each drops, before the
    gathering, what cannot be in the union's best ``dets_per_class``).

    A per-class CSV (``lvis_per_class_ap.csv``: class, LVIS frequency,
    training image count (``image_count`` of the annotation file's
    categories), ground-truth instances, AP, AP-fixed and the detections in
    the AP-fixed budget per IoU type) and a plot of AP against the training
    count (``lvis_per_class_ap.png``) go to ``out_dir``: by default the
    runner's work dir, which :class:`mmlt.MetricOutDirHook` passes to
    :meth:`set_out_dir`.

    Args:
        ann_file (str): LVIS annotation file of the evaluated set.
        metric (str | list[str]): ``'bbox'``, ``'segm'`` (and the
            ``LVISMetric`` proposal metrics, standard path only).
        ap_types (Sequence[str]): Which of ``'standard'``, ``'fixed'``,
            ``'pool'`` to compute. Defaults to all three.
        dets_per_class (int): Budget of AP-fixed. Defaults to 10000.
        max_dets_per_img (int): Per-image cap of the standard AP. Defaults to
            300 (LVIS); -1: none.
        standard_score_thr (float, optional): Score floor of the standard
            AP's detections (``score > thr``), applied before the cap; the
            LVIS configs set MMDetection's 1e-4, since their model keeps
            scores down to 1e-7 for AP-fixed. Defaults to None (no floor).
        eval_chunk_dets (int): Detections per run of the official
            evaluation for AP-fixed (classes are evaluated in groups to bound
            memory). Defaults to 500000.
        out_dir (str | bool, optional): Directory of the per-class CSV and
            plot; None: the one given to :meth:`set_out_dir` (the work dir,
            by :class:`mmlt.MetricOutDirHook`; no files without it); False:
            no files.
        **kwargs: Other arguments of ``LVISMetric``.
    """

    def __init__(self,
                 ann_file: Optional[str] = None,
                 metric='bbox',
                 ap_types: Sequence[str] = AP_TYPES,
                 dets_per_class: int = 10000,
                 max_dets_per_img: int = 300,
                 standard_score_thr: Optional[float] = None,
                 eval_chunk_dets: int = 500000,
                 out_dir=None,
                 **kwargs) -> None:
        if ann_file is None:
            raise ValueError(
                'LVISFixedMetric needs ann_file (the LVIS json of the '
                'evaluated set): AP-fixed reads its federated image lists')
        super().__init__(ann_file=ann_file, metric=metric, **kwargs)
        ap_types = (ap_types, ) if isinstance(ap_types, str) else ap_types
        if not ap_types:
            raise ValueError(f'ap_types must name some of {AP_TYPES}')
        self.ap_types = tuple(
            check_choice('ap_types', t, AP_TYPES) for t in ap_types)
        self.dets_per_class = check_int('dets_per_class', dets_per_class)
        if max_dets_per_img != -1:
            check_int('max_dets_per_img', max_dets_per_img)
        self.max_dets_per_img = max_dets_per_img
        self.standard_score_thr = None if standard_score_thr is None else \
            check_number('standard_score_thr', standard_score_thr, minimum=0)
        self.eval_chunk_dets = check_int('eval_chunk_dets', eval_chunk_dets)
        self.out_dir = out_dir
        others = [m for m in self.metrics if m not in ('bbox', 'segm')]
        if others and 'standard' not in self.ap_types:
            raise ValueError(
                f'metric {others} exists on the standard path only: add '
                f"'standard' to ap_types or drop them")
        # format_only writes the standard result files and evaluates nothing
        self._budget_types = [
            m for m in self.metrics if m in ('bbox', 'segm')
        ] if {'fixed', 'pool'} & set(self.ap_types) and \
            not self.format_only else []
        self._all_budget_types = list(self._budget_types)
        self._stores = self._new_stores()
        self.cat_ids = self._lvis_api.get_cat_ids()
        self.img_ids = self._lvis_api.get_img_ids()
        self._standard_evaluators = {
            metric: self._single_metric(metric)
            for metric in self.metrics
        } if 'standard' in self.ap_types else {}

    def _single_metric(self, metric: str) -> _SingleMetricLVIS:
        """``LVISMetric`` of ``metric`` with the options given here, and
        ``classwise`` for ``bbox`` and ``segm`` (the per-class CSV)."""
        options = {name: getattr(self, name) for name in _PASSED_OPTIONS}
        return _SingleMetricLVIS(
            self._lvis_api,
            metric,
            classwise=self.classwise or metric in ('bbox', 'segm'),
            **options)

    def _new_stores(self) -> Dict[str, TopKPerClassStore]:
        return {
            iou_type: TopKPerClassStore(self.dets_per_class,
                                        iou_type == 'segm')
            for iou_type in self._budget_types
        }

    def set_standard_only(self, standard_only: bool) -> None:
        """Compute only the standard AP (True; :class:`mmlt.
        StandardAPUntilLastHook` does it for periodic validations) or every
        type of ``ap_types`` (False)."""
        if standard_only and 'standard' not in self.ap_types:
            raise ValueError(
                f"ap_types={self.ap_types} has no 'standard': a standard-only "
                'validation needs it')
        self._budget_types = [] if standard_only else list(
            self._all_budget_types)
        self._stores = self._new_stores()

    def set_out_dir(self, out_dir: str) -> None:
        """Where the per-class files go when ``out_dir`` is None (the
        protocol of :class:`mmlt.ClassCountsHook`)."""
        if self.out_dir is None:
            self.out_dir = out_dir

    # ------------------------------------------------------------ process
    def _standard_subset(self, pred: dict) -> Optional[torch.Tensor]:
        """Indices of the detections the standard path can use: those above
        ``standard_score_thr``, then the best ``max_dets_per_img`` by box
        score (and by mask score when the model gives one), in their order;
        None when all are."""
        scores = pred['scores']
        keep = torch.ones(len(scores), dtype=torch.bool, device=scores.device)
        if self.standard_score_thr is not None:
            keep = scores > self.standard_score_thr  # mmdet's strict test
        cap = self.max_dets_per_img
        if cap >= 0 and int(keep.sum()) > cap:
            capped = torch.zeros_like(keep)
            for key in ('scores', 'mask_scores'):
                if key in pred:
                    ranked = torch.where(keep, pred[key], -float('inf'))
                    best = torch.sort(
                        ranked, descending=True, stable=True).indices[:cap]
                    capped[best] = True
            keep &= capped
        return None if bool(keep.all()) else keep.nonzero().reshape(-1)

    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        """Keep the standard path's detections (``LVISMetric.process``) and
        stream all detections into the per-class budgets. Masks may be a
        ``(n, H, W)`` tensor or ``n`` RLEs (:class:`mmlt.PerClassTopKRoIHead`
        with ``mask_chunk`` encodes them as they come)."""
        for data_sample in data_samples:
            pred = data_sample['pred_instances']
            rles = pred.get('masks')
            if rles is not None and not isinstance(rles, list):
                rles = encode_mask_results(rles.detach().cpu().numpy())
            if 'standard' in self.ap_types:
                self._process_standard(data_batch, data_sample, rles)
            if not self._stores:
                continue
            img_id = int(data_sample['img_id'])
            labels = pred['labels'].cpu().numpy()
            bboxes = pred['bboxes'].cpu().numpy()
            scores = pred['scores'].cpu().numpy()
            if 'bbox' in self._stores:
                self._stores['bbox'].add(img_id, labels, scores, bboxes)
            if 'segm' in self._stores:
                if rles is None:
                    raise ValueError(
                        "LVISFixedMetric(metric='segm') needs masks in "
                        'pred_instances; drop segm for a box-only model')
                mask_scores = pred['mask_scores'].cpu().numpy() \
                    if 'mask_scores' in pred else scores
                self._stores['segm'].add(img_id, labels, mask_scores, bboxes,
                                         rles)

    def _process_standard(self, data_batch: dict, data_sample: dict,
                          rles: Optional[list]) -> None:
        """``LVISMetric.process`` of the standard path's detections, with
        the masks already encoded."""
        pred = data_sample['pred_instances']
        keep = self._standard_subset(pred)
        index = range(len(pred['scores'])) if keep is None else keep.tolist()
        data_sample = dict(data_sample)
        data_sample['pred_instances'] = {
            key: value if keep is None else value[keep]
            for key, value in pred.items() if key != 'masks'
        }
        super().process(data_batch, [data_sample])
        if rles is not None:
            self.results[-1][1]['masks'] = [rles[i] for i in index]

    def evaluate(self, size: int) -> dict:
        """Collect the standard results and the budgets of every process,
        then compute on the main process (``BaseMetric.evaluate`` assumes
        one result per sample, which the budgets are not)."""
        if get_world_size() > 1 and self._stores:
            self._share_budgets()
        stores = collect_results([self._stores], get_world_size(),
                                 self.collect_device)
        self._stores = self._new_stores()
        results = collect_results(self.results, size, self.collect_device) \
            if 'standard' in self.ap_types else []
        self.results.clear()
        if is_main_process():
            merged = self._new_stores()
            for rank_stores in stores:
                for iou_type, store in rank_stores.items():
                    merged[iou_type].merge(store)
            metrics = self._compute_all(results, merged)
            if self.prefix:
                metrics = {f'{self.prefix}/{k}': v for k, v in metrics.items()}
            output = [metrics]
        else:
            output = [None]
        broadcast_object_list(output)
        return output[0]

    def _share_budgets(self) -> None:
        """Before gathering: drop the images a lower-ranked process also
        evaluated (the sampler's padding), then the detections below their
        class's ``dets_per_class``-th best score over all processes."""
        rank = get_rank()
        image_lists = all_gather_object(
            sorted(next(iter(self._stores.values())).image_ids))
        earlier = set().union(*map(set, image_lists[:rank]))
        summaries = {}
        for iou_type, store in self._stores.items():
            store.drop(image_ids=earlier & store.image_ids)
            detections = store.detections()
            summaries[iou_type] = (detections['labels'], detections['scores'])
        summaries = all_gather_object(summaries)
        for iou_type, store in self._stores.items():
            store.drop(min_scores=kth_best_scores(
                [summary[iou_type] for summary in summaries],
                self.dets_per_class, len(self.cat_ids)))

    # ------------------------------------------------------------ compute
    def compute_metrics(self, results: list) -> Dict[str, float]:
        """Standard, fixed and pooled AP of the standard results and the
        current budgets (single process)."""
        return self._compute_all(results, self._stores)

    def _compute_all(self, results: list,
                     stores: Dict[str, TopKPerClassStore]) -> Dict[str, float]:
        per_class = {}
        metrics = OrderedDict()
        if 'standard' in self.ap_types:
            metrics.update(self._standard_metrics(results, per_class))
        for iou_type, store in stores.items():
            metrics.update(self._budget_metrics(iou_type, store, per_class))
        self._log_summary(metrics)
        if self.out_dir and per_class and not self.format_only:
            self._write_per_class(self.out_dir, per_class)
        return metrics

    def _standard_metrics(self, results: list, per_class: dict) -> dict:
        """``LVISMetric.compute_metrics`` of each metric, with the per-class
        AP of ``bbox`` and ``segm`` (kept in the output only with
        ``classwise``)."""
        names = [cat['name'] for cat in self._lvis_api.load_cats(self.cat_ids)]
        output = OrderedDict()
        for metric, evaluator in self._standard_evaluators.items():
            values = evaluator.compute_metrics(results)
            if metric in ('bbox', 'segm'):
                per_class[f'{metric}_AP'] = np.array([
                    values.get(f'{name}_precision', np.nan) for name in names
                ], dtype=np.float64)
                if not self.classwise:
                    for name in names:
                        values.pop(f'{name}_precision', None)
            output.update(values)
        return output

    def _budget_metrics(self, iou_type: str, store: TopKPerClassStore,
                        per_class: dict) -> dict:
        gt = self._lvis_api
        detections = store.detections()
        num_classes = len(self.cat_ids)
        label_of = {cat_id: label for label, cat_id in enumerate(self.cat_ids)}
        class_ap = np.full(num_classes, np.nan)
        matches = {}
        for labels in self._class_chunks(detections['labels']):
            matches.update(
                self._evaluate_classes(iou_type, detections, labels,
                                       class_ap, label_of))
        # classes without any detection: AP 0 when they have ground truth,
        # as the official evaluation gives them
        num_gt = self._gt_counts(count_ignored=False)
        for label, cat_id in enumerate(self.cat_ids):
            if cat_id in matches:
                num_gt[label] = matches[cat_id][3]
            elif num_gt[label] > 0 and np.isnan(class_ap[label]):
                class_ap[label] = 0.0
        per_class[f'{iou_type}_fixed_AP'] = class_ap
        per_class[f'{iou_type}_fixed_dets'] = self._warn_short_lists(
            iou_type, detections['labels'])
        frequency = np.array(
            [cat['frequency'] for cat in gt.load_cats(self.cat_ids)])
        groups = [('', np.ones(num_classes, dtype=bool))] + [
            (f, frequency == f) for f in FREQUENCIES
        ]
        output = OrderedDict()
        if 'fixed' in self.ap_types:
            for suffix, members in groups:
                values = class_ap[members]
                values = values[~np.isnan(values)]
                # -1 when no class of the group has ground truth, as LVISEval
                output[f'{iou_type}_fixed_AP{suffix}'] = round(
                    float(values.mean()), 3) if len(values) else -1.0
        if 'pool' in self.ap_types:
            rec_thrs = self._rec_thrs()
            num_thrs = len(self.iou_thrs)
            for suffix, members in groups:
                pooled = [
                    matches[cat_id] for label, cat_id in enumerate(
                        self.cat_ids) if members[label] and cat_id in matches
                ]
                scores = np.concatenate([m[0] for m in pooled] or
                                        [np.zeros(0)])
                tps = np.concatenate([m[1] for m in pooled] or
                                     [np.zeros((num_thrs, 0), bool)], axis=1)
                fps = np.concatenate([m[2] for m in pooled] or
                                     [np.zeros((num_thrs, 0), bool)], axis=1)
                ap = interpolated_average_precision(
                    scores, tps, fps, int(num_gt[members].sum()), rec_thrs)
                output[f'{iou_type}_pool_AP{suffix}'] = -1.0 if np.isnan(
                    ap) else round(ap, 3)
        return output

    def _warn_short_lists(self, iou_type: str,
                          labels: np.ndarray) -> np.ndarray:
        """Detections per class in the budget (label order); a warning
        names the classes with fewer than ``dets_per_class``."""
        counts = np.bincount(labels, minlength=len(self.cat_ids))
        short = np.flatnonzero(counts < self.dets_per_class)
        if len(short):
            cats = self._lvis_api.load_cats([self.cat_ids[i] for i in short])
            names = [f'{cat["name"]} ({counts[i]})'
                     for i, cat in zip(short, cats)]
            shown = ', '.join(names[:50]) + (
                f' and {len(names) - 50} more (see the per-class CSV)'
                if len(names) > 50 else '')
            MMLogger.get_current_instance().warning(
                f'AP-fixed ({iou_type}): {len(short)} of {len(counts)} '
                f'classes have fewer than dets_per_class='
                f'{self.dets_per_class} detections: {shown}. Their lists '
                'were cut by the model (score floor, per-image caps), so a '
                'score change can move detections across the cut; produce '
                'them with mmlt.PerClassTopKRoIHead and '
                'test_cfg.rcnn.dets_per_class (floor 1e-7, Dave et al.)')
        return counts.astype(np.float64)

    def _gt_counts(self, count_ignored: bool) -> np.ndarray:
        """Ground-truth objects per class (label order) in the file."""
        label_of = {cat_id: label for label, cat_id in enumerate(self.cat_ids)}
        counts = np.zeros(len(self.cat_ids), dtype=np.int64)
        for ann in self._lvis_api.anns.values():
            if count_ignored or not ann.get('ignore', 0):
                counts[label_of[ann['category_id']]] += 1
        return counts

    def _class_chunks(self, labels: np.ndarray) -> List[np.ndarray]:
        """Groups of detected classes with at most ``eval_chunk_dets``
        detections each (a class with more is a group of its own)."""
        present, counts = np.unique(labels, return_counts=True)
        chunks, current, size = [], [], 0
        for label, count in zip(present, counts):
            if current and size + count > self.eval_chunk_dets:
                chunks.append(np.array(current))
                current, size = [], 0
            current.append(label)
            size += count
        if current:
            chunks.append(np.array(current))
        return chunks

    def _evaluate_classes(self, iou_type: str, detections: dict,
                          labels: np.ndarray, class_ap: np.ndarray,
                          label_of: dict) -> dict:
        """The official per-class evaluation of some classes' budgeted
        detections, without a per-image cap; fills their ``class_ap``."""
        from lvis import LVISEval, LVISResults
        gt = self._lvis_api
        indices = np.flatnonzero(np.isin(detections['labels'], labels))
        # LVISResults deep-copies the gt dataset: give it one without the
        # annotations (it only needs the images and categories)
        images_only = copy.copy(gt)
        images_only.dataset = {
            key: value
            for key, value in gt.dataset.items() if key != 'annotations'
        }
        images_only.dataset['annotations'] = []
        lvis_dt = LVISResults(
            images_only,
            to_lvis_results(detections, indices, self.cat_ids),
            max_dets=-1)
        lvis_eval = LVISEval(gt, lvis_dt, iou_type)
        params = lvis_eval.params
        params.cat_ids = sorted(self.cat_ids[label] for label in labels)
        params.iou_thrs = np.asarray(self.iou_thrs)
        params.area_rng, params.area_rng_lbl = params.area_rng[:1], ['all']
        params.max_dets = -1
        lvis_eval.evaluate()
        lvis_eval.accumulate()
        precision = lvis_eval.eval['precision']  # (T, R, K, 1)
        for k, cat_id in enumerate(params.cat_ids):
            values = precision[:, :, k, 0]
            values = values[values > -1]
            if values.size:
                class_ap[label_of[cat_id]] = float(values.mean())
        return matches_by_class(lvis_eval.eval_imgs)

    @staticmethod
    def _rec_thrs() -> np.ndarray:
        return np.linspace(0.0, 1.00, 101, endpoint=True)

    # ------------------------------------------------------------ output
    def _log_summary(self, metrics: dict) -> None:
        logger = MMLogger.get_current_instance()
        rows = []
        for iou_type in [m for m in self.metrics if m in ('bbox', 'segm')]:
            for kind, label in (('', 'AP'), ('fixed_', 'AP-fixed'),
                                ('pool_', 'AP-pool')):
                values = [
                    metrics.get(f'{iou_type}_{kind}AP{suffix}')
                    for suffix in ('', 'r', 'c', 'f')
                ]
                if values[0] is not None:
                    rows.append(f'{iou_type:<5} {label:<9} ' + ' '.join(
                        f'{v:7.3f}' for v in values))
        if rows:
            logger.info('LVIS AP, AP-fixed (%d detections per class, no '
                        'per-image cap) and AP-pool:\n%-15s %7s %7s %7s %7s\n'
                        '%s', self.dets_per_class, '', 'all', 'r', 'c', 'f',
                        '\n'.join(rows))

    def _write_per_class(self, out_dir: str, per_class: dict) -> None:
        gt = self._lvis_api
        cats = gt.load_cats(self.cat_ids)
        columns = [
            key for key in ('bbox_AP', 'bbox_fixed_AP', 'bbox_fixed_dets',
                            'segm_AP', 'segm_fixed_AP', 'segm_fixed_dets')
            if key in per_class
        ]
        os.makedirs(out_dir, exist_ok=True)
        csv_file = osp.join(out_dir, PER_CLASS_FILE)
        rows = []
        gt_instances = self._gt_counts(count_ignored=True)
        for label, cat in enumerate(cats):
            rows.append(
                dict(
                    class_index=label,
                    category_id=cat['id'],
                    class_name=cat['name'],
                    frequency=cat.get('frequency', ''),
                    train_image_count=cat.get('image_count', ''),
                    gt_instances=int(gt_instances[label]),
                    **{
                        key: _cell(key, per_class[key][label])
                        for key in columns
                    }))
        with open(csv_file, 'w', newline='') as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        png_file = osp.splitext(csv_file)[0] + '.png'
        plot_per_class_ap(rows, columns, png_file)
        MMLogger.get_current_instance().info(
            'per-class AP: %s, plot: %s', csv_file, png_file)


__all__ = ['LVISFixedMetric', 'AP_TYPES']
