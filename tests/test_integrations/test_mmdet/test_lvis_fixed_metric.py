"""LVIS AP, AP-fixed and AP-pool (Dave et al., 2021) against values worked
out by hand, the invariances that motivate them, and the official LVIS API.

The tiny set: five 64x64 images, class A (id 1, rare) and class B (id 2,
frequent); every true positive is a copy of its ground truth (IoU 1, a match
at every IoU threshold) and every false positive lies away from the ground
truth (IoU < 0.5), so all ten IoU thresholds give the same precision-recall
curve. LVIS AP reads the interpolated precision at recall 0, 0.01, ..., 1
(101 points).
"""
import copy
import csv
import json

import numpy as np
import pytest
import torch
from mmengine.logging import MMLogger

pytest.importorskip('mmdet')
pytest.importorskip('lvis')

import mmlt  # noqa: E402,F401  (the numpy shim for lvis)
from mmlt.integrations.mmdet import LVISFixedMetric, topk_per_class  # noqa
from mmlt.integrations.mmdet.lvis_fixed_ap import (  # noqa: E402
    TopKPerClassStore, interpolated_average_precision, kth_best_scores,
    matches_by_class)

SIZE = 64
A, B = 0, 1  # labels of categories 1 and 2


def square(x, y, side):
    return [x, y, side, side]


GT_BOXES = {  # (image, label) -> box x, y, w, h
    (1, A): square(4, 4, 20),
    (1, B): square(34, 34, 24),
    (2, A): square(30, 30, 20),
    (3, B): square(6, 30, 22),
}


def tiny_lvis():
    """Image 2 lists B as absent, image 3 lists A as absent and B as not
    exhaustively annotated, image 4 lists both as absent, image 5 neither."""
    lists = {1: ([], []), 2: ([2], []), 3: ([1], [2]), 4: ([1, 2], []),
             5: ([], [])}
    images = [
        dict(id=i, height=SIZE, width=SIZE, neg_category_ids=neg,
             not_exhaustive_category_ids=not_exhaustive)
        for i, (neg, not_exhaustive) in lists.items()
    ]
    annotations = []
    for ann_id, ((image, label), (x, y, w, h)) in enumerate(
            GT_BOXES.items(), 1):
        annotations.append(
            dict(id=ann_id, image_id=image, category_id=label + 1,
                 bbox=[x, y, w, h], area=w * h,
                 segmentation=[[x, y, x, y + h, x + w, y + h, x + w, y]]))
    categories = [
        dict(id=1, name='thing_a', frequency='r', image_count=3),
        dict(id=2, name='thing_b', frequency='f', image_count=400),
    ]
    return dict(images=images, annotations=annotations, categories=categories)


#: (image, label, score, box or None for the ground-truth copy)
DETECTIONS = [
    (1, A, 0.9, None),  # TP
    (2, A, 0.7, None),  # TP
    (4, A, 0.8, square(10, 10, 20)),  # FP: image 4 denies A
    (5, A, 0.95, square(10, 10, 20)),  # not evaluated: image 5 says nothing
    (1, B, 0.5, None),  # TP
    (3, B, 0.4, None),  # TP
    (3, B, 0.45, square(40, 2, 16)),  # ignored: B not exhaustive on image 3
    (2, B, 0.3, square(2, 2, 14)),  # FP: image 2 denies B
]


def scaled(detections, label, factor):
    return [(i, c, s * factor if c == label else s, box)
            for i, c, s, box in detections]


def mask_of(box):
    x, y, w, h = box
    mask = np.zeros((SIZE, SIZE), dtype=bool)
    mask[int(y):int(y + h), int(x):int(x + w)] = True
    return mask


def gt_mask(content, image, label):
    from pycocotools import mask as mask_utils
    ann = next(a for a in content['annotations']
               if a['image_id'] == image and a['category_id'] == label + 1)
    rle = mask_utils.merge(
        mask_utils.frPyObjects(ann['segmentation'], SIZE, SIZE))
    return mask_utils.decode(rle).astype(bool)


def data_samples(content, detections):
    """One mmdet-style data sample (dict) per image, in image order."""
    samples = []
    for image in sorted(img['id'] for img in content['images']):
        mine = [d for d in detections if d[0] == image]
        boxes, masks = [], []
        for _, label, _, box in mine:
            if box is None:
                box = GT_BOXES[(image, label)]
                masks.append(gt_mask(content, image, label))
            else:
                masks.append(mask_of(box))
            x, y, w, h = box
            boxes.append([x, y, x + w, y + h])
        samples.append(
            dict(
                img_id=image,
                ori_shape=(SIZE, SIZE),
                pred_instances=dict(
                    bboxes=torch.tensor(boxes, dtype=torch.float32).reshape(
                        -1, 4),
                    scores=torch.tensor([d[2] for d in mine],
                                        dtype=torch.float32),
                    labels=torch.tensor([d[1] for d in mine],
                                        dtype=torch.long),
                    masks=torch.from_numpy(
                        np.stack(masks) if masks else np.zeros(
                            (0, SIZE, SIZE), bool)))))
    return samples


@pytest.fixture
def ann_file(tmp_path):
    path = tmp_path / 'lvis_tiny.json'
    path.write_text(json.dumps(tiny_lvis()))
    return str(path)


def evaluate(ann_file, detections, tmp_path=None, **kwargs):
    kwargs.setdefault('metric', ['bbox', 'segm'])
    kwargs.setdefault('out_dir', str(tmp_path) if tmp_path else False)
    metric = LVISFixedMetric(ann_file=ann_file, **kwargs)
    samples = data_samples(tiny_lvis(), detections)
    metric.process({}, samples)
    return metric.evaluate(len(samples))


# AP by hand: 101 recall points r = 0, 0.01, ..., 1.
# A, ranked: 0.9 TP, 0.8 FP, 0.7 TP (the 0.95 on image 5 is not evaluated),
#   2 ground truths: precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1;
#   interpolated: 1 for r <= 0.5 (51 points), 2/3 above (50 points).
AP_A = (51 * 1 + 50 * 2 / 3) / 101
# B: 0.5 TP, 0.45 ignored, 0.4 TP, 0.3 FP: precision 1 up to recall 1.
AP_B = 1.0
# Pooled ranking (4 ground truths): 0.9 TP, 0.8 FP, 0.7 TP, 0.5 TP,
#   0.45 ignored, 0.4 TP, 0.3 FP -> recall .25 .25 .5 .75 .75 1 1, precision
#   1 .5 .667 .75 .75 .8 .667; interpolated: 1 for r <= .25 (26 points),
#   0.8 above (75 points).
AP_POOL = (26 * 1 + 75 * 0.8) / 101


def test_hand_computed_fixed_and_pool(ann_file, tmp_path):
    # no budget binds (10,000 per class) and no per-image cap binds (300)
    metrics = evaluate(ann_file, DETECTIONS, tmp_path)
    for iou_type in ('bbox', 'segm'):
        key = f'lvis/{iou_type}_'
        assert metrics[key + 'fixed_AP'] == pytest.approx(
            round((AP_A + AP_B) / 2, 3))
        assert metrics[key + 'fixed_APr'] == pytest.approx(round(AP_A, 3))
        assert metrics[key + 'fixed_APf'] == pytest.approx(AP_B)
        assert metrics[key + 'fixed_APc'] == -1  # no common class
        assert metrics[key + 'pool_AP'] == pytest.approx(round(AP_POOL, 3))
        # a pool of one class is that class's AP
        assert metrics[key + 'pool_APr'] == pytest.approx(round(AP_A, 3))
        # the standard AP equals AP-fixed when neither cap binds
        assert metrics[key + 'AP'] == pytest.approx(
            round((AP_A + AP_B) / 2, 3))
    with open(tmp_path / 'lvis_per_class_ap.csv') as f:
        rows = list(csv.DictReader(f))
    assert [r['class_name'] for r in rows] == ['thing_a', 'thing_b']
    assert [r['frequency'] for r in rows] == ['r', 'f']
    assert [r['train_image_count'] for r in rows] == ['3', '400']
    assert [r['gt_instances'] for r in rows] == ['2', '2']
    assert float(rows[0]['segm_fixed_AP']) == pytest.approx(AP_A, abs=1e-4)
    assert float(rows[1]['bbox_AP']) == pytest.approx(AP_B, abs=1e-3)
    assert (tmp_path / 'lvis_per_class_ap.png').stat().st_size > 0


def test_budget_counts_every_detection_of_the_class(ann_file):
    # 2 per class: A keeps 0.95 (image 5, not evaluated) and 0.9 (TP), so
    # recall stops at 1/2 with precision 1: AP = 51/101; B keeps 0.5 (TP)
    # and 0.45 (ignored): also 51/101
    metrics = evaluate(ann_file, DETECTIONS, metric='bbox', dets_per_class=2)
    assert metrics['lvis/bbox_fixed_AP'] == pytest.approx(round(51 / 101, 3))


def test_scaling_one_class_leaves_ap_fixed_but_not_capped_ap(ann_file):
    """With one detection per image (a cap that binds), image 1 keeps A's
    0.9 and drops B's 0.5, image 3 keeps B's ignored 0.45: B finds nothing,
    AP = (AP_A + 0) / 2. Scaling B by 1.9 makes B's 0.95 win image 1: A
    keeps 0.8 FP, 0.7 TP (AP 0.5 * 51/101), B 0.95 TP (AP 51/101)."""
    capped = dict(metric='bbox', max_dets_per_img=1)
    before = evaluate(ann_file, DETECTIONS, **capped)
    after = evaluate(ann_file, scaled(DETECTIONS, B, 1.9), **capped)
    assert before['lvis/bbox_AP'] == pytest.approx(round(AP_A / 2, 3))
    assert after['lvis/bbox_AP'] == pytest.approx(
        round((0.5 * 51 / 101 + 51 / 101) / 2, 3))
    for key in ('fixed_AP', 'fixed_APr', 'fixed_APf'):
        assert after[f'lvis/bbox_{key}'] == before[f'lvis/bbox_{key}']
    # and with a binding budget too
    budget = dict(metric='bbox', dets_per_class=2)
    assert evaluate(ann_file, scaled(DETECTIONS, B, 1.9),
                    **budget)['lvis/bbox_fixed_AP'] == evaluate(
                        ann_file, DETECTIONS, **budget)['lvis/bbox_fixed_AP']


def test_ap_pool_rewards_cross_class_calibration(ann_file):
    # B x 1.9: 0.95 TP(B), 0.9 TP(A), 0.855 ignored, 0.8 FP, 0.76 TP(B),
    # 0.7 TP(A), 0.57 FP -> recall .25 .5 .5 .5 .75 1 1, precision
    # 1 1 1 .667 .75 .8 .667; interpolated 1 for r <= .5 (51 points), 0.8
    # above (50 points)
    metrics = evaluate(ann_file, scaled(DETECTIONS, B, 1.9), metric='bbox')
    assert metrics['lvis/bbox_pool_AP'] == pytest.approx(
        round((51 + 50 * 0.8) / 101, 3))
    assert metrics['lvis/bbox_pool_AP'] != pytest.approx(round(AP_POOL, 3))
    # the per-class numbers did not move
    assert metrics['lvis/bbox_fixed_AP'] == pytest.approx(
        round((AP_A + AP_B) / 2, 3))


def official_results(ann_file, detections, iou_type, max_dets):
    from lvis import LVIS, LVISEval, LVISResults
    from pycocotools import mask as mask_utils
    content = tiny_lvis()
    results = []
    for image, label, score, box in detections:
        mask = gt_mask(content, image, label) if box is None else mask_of(box)
        box = GT_BOXES[(image, label)] if box is None else box
        result = dict(image_id=image, category_id=label + 1, bbox=list(box),
                      score=score)
        if iou_type == 'segm':
            result['segmentation'] = mask_utils.encode(
                np.asfortranarray(mask.astype(np.uint8)))
        results.append(result)
    gt = LVIS(ann_file)
    lvis_eval = LVISEval(gt, LVISResults(gt, results, max_dets=max_dets),
                         iou_type)
    lvis_eval.run()
    return lvis_eval.get_results()


@pytest.mark.parametrize('iou_type', ['bbox', 'segm'])
@pytest.mark.parametrize('max_dets', [300, 1])
def test_standard_and_fixed_match_the_official_api(ann_file, iou_type,
                                                   max_dets):
    detections = scaled(DETECTIONS, B, 1.9)
    ours = evaluate(ann_file, detections, metric=iou_type,
                    max_dets_per_img=max_dets)
    official = official_results(ann_file, detections, iou_type, max_dets)
    for key in ('AP', 'AP50', 'AP75', 'APr', 'APc', 'APf'):
        assert ours[f'lvis/{iou_type}_{key}'] == pytest.approx(
            round(float(official[key]), 3)), key
    # AP-fixed with a budget that does not bind = the official evaluation
    # without a per-image cap (LVISResults(max_dets=-1))
    uncapped = official_results(ann_file, detections, iou_type, -1)
    for key in ('AP', 'APr', 'APf'):
        assert ours[f'lvis/{iou_type}_fixed_{key}'] == pytest.approx(
            round(float(uncapped[key]), 3)), key


def test_pooled_ap_of_one_class_is_the_official_class_ap(ann_file):
    """interpolated_average_precision over one class's matches equals the
    official per-class AP (random scores, boxes and federated lists)."""
    from lvis import LVIS, LVISEval, LVISResults
    rng = np.random.default_rng(0)
    gt = LVIS(ann_file)
    results = []
    for image in range(1, 6):
        for _ in range(6):
            x, y = rng.integers(0, 40, size=2)
            side = int(rng.integers(10, 24))
            results.append(
                dict(image_id=image, category_id=int(rng.integers(1, 3)),
                     bbox=[float(x), float(y), side, side],
                     score=float(rng.random())))
    results += [dict(image_id=i, category_id=c + 1, bbox=list(box),
                     score=float(rng.random()))
                for (i, c), box in GT_BOXES.items()]
    lvis_eval = LVISEval(gt, LVISResults(gt, results, max_dets=-1), 'bbox')
    lvis_eval.params.area_rng = lvis_eval.params.area_rng[:1]
    lvis_eval.params.area_rng_lbl = ['all']
    lvis_eval.evaluate()
    lvis_eval.accumulate()
    matches = matches_by_class(lvis_eval.eval_imgs)
    for k, cat_id in enumerate(lvis_eval.params.cat_ids):
        precision = lvis_eval.eval['precision'][:, :, k, 0]
        scores, tp, fp, num_gt = matches[cat_id]
        ours = interpolated_average_precision(scores, tp, fp, num_gt,
                                              lvis_eval.params.rec_thrs)
        assert ours == pytest.approx(float(precision.mean()), abs=1e-12)


def slow_topk_per_class(scores, labels, k):
    keep = []
    for label in sorted(set(labels)):
        members = [i for i in range(len(scores)) if labels[i] == label]
        members.sort(key=lambda i: -scores[i])  # stable: earlier first
        keep += members[:k]
    return sorted(keep)


def test_topk_per_class_against_a_loop():
    generator = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 6, (200, ), generator=generator).float()
    labels = torch.randint(0, 7, (200, ), generator=generator)
    for k in (1, 3, 50):
        assert topk_per_class(scores, labels, k).tolist() == \
            slow_topk_per_class(scores.tolist(), labels.tolist(), k)


def test_store_prunes_to_the_same_detections():
    """Pruning while images stream in keeps what one final cut keeps."""
    rng = np.random.default_rng(1)
    store = TopKPerClassStore(k=5, with_masks=False, prune_at=7)
    every = []
    for image in range(30):
        n = int(rng.integers(0, 6))
        labels = rng.integers(0, 4, n)
        scores = rng.random(n).astype(np.float32)
        boxes = rng.random((n, 4)).astype(np.float32)
        store.add(image, labels, scores, boxes)
        every += [(image, int(c), float(s)) for c, s in zip(labels, scores)]
    store.add(3, np.array([0]), np.array([2.0]), np.zeros((1, 4)))  # repeat
    kept = store.detections()
    expected = [every[i] for i in slow_topk_per_class(
        [e[2] for e in every], [e[1] for e in every], 5)]
    assert sorted(zip(kept['image_ids'].tolist(), kept['labels'].tolist(),
                      kept['scores'].tolist())) == sorted(expected)


def test_processes_merge_without_repeated_images():
    one = TopKPerClassStore(k=10, with_masks=False)
    two = TopKPerClassStore(k=10, with_masks=False)
    one.add(1, np.array([0, 1]), np.array([.9, .8]), np.zeros((2, 4)))
    two.add(2, np.array([0]), np.array([.7]), np.zeros((1, 4)))
    two.add(1, np.array([0, 1]), np.array([.9, .8]), np.zeros((2, 4)))
    one.merge(two)  # image 1 was a sampler's padding on the second process
    assert sorted(one.detections()['scores'].tolist()) == pytest.approx(
        [.7, .8, .9])


def test_bad_options_are_refused(ann_file):
    with pytest.raises(ValueError, match='ap_types'):
        LVISFixedMetric(ann_file=ann_file, ap_types=('fixed', 'best'))
    with pytest.raises(ValueError, match='dets_per_class'):
        LVISFixedMetric(ann_file=ann_file, dets_per_class=0)
    with pytest.raises(ValueError, match='standard'):
        LVISFixedMetric(ann_file=ann_file, metric='proposal',
                        ap_types=('fixed', ))
    with pytest.raises(ValueError, match='ann_file'):
        LVISFixedMetric()
    with pytest.raises(ValueError, match="no 'standard'"):
        LVISFixedMetric(ann_file=ann_file,
                        ap_types=('fixed', )).set_standard_only(True)


def test_fixed_only_skips_the_standard_path(ann_file):
    metrics = evaluate(ann_file, DETECTIONS, metric='bbox',
                       ap_types=('fixed', ))
    assert set(metrics) == {f'lvis/bbox_fixed_AP{s}' for s in
                            ('', 'r', 'c', 'f')}


def test_roi_head_keeps_top_k_per_class_before_the_image_cap():
    from mmlt_det_helpers import (build_roi_head, features,
                                  proposal_results, roi_head_cfg)
    cfg = roi_head_cfg(
        bbox_head=dict(type='Shared2FCBBoxHead', in_channels=8,
                       fc_out_channels=32, roi_feat_size=7, num_classes=5),
        roi_head_type='mmlt.PerClassTopKRoIHead')
    head = build_roi_head(cfg).eval()
    metas = [dict(img_shape=(SIZE, SIZE), scale_factor=(1., 1.))] * 2
    x = features()
    test_cfg = copy.deepcopy(head.test_cfg)
    test_cfg.max_per_img = -1
    with torch.no_grad():
        plain = head.predict_bbox(x, metas, proposal_results(), test_cfg)
        test_cfg.max_per_class = 2
        test_cfg.max_per_img = 7
        capped = head.predict_bbox(x, metas, proposal_results(),
                                   test_cfg)
    for full, ours in zip(plain, capped):
        keep = topk_per_class(full.scores, full.labels, 2)
        best = keep[torch.sort(full.scores[keep], descending=True,
                               stable=True).indices[:7]]
        assert len(ours) == min(7, len(keep)) and len(full) > len(ours)
        assert torch.equal(ours.scores, full.scores[torch.sort(best).values])
        assert torch.bincount(ours.labels).max() <= 2


def test_processes_keep_only_what_the_union_can_use():
    """Each process drops what is below its class's k-th best over all
    processes; the gathered union then equals one process seeing all."""
    rng = np.random.default_rng(2)
    k, num_classes = 4, 3
    everything = TopKPerClassStore(k=k, with_masks=False)
    ranks = [TopKPerClassStore(k=k, with_masks=False) for _ in range(3)]
    for image in range(24):
        n = int(rng.integers(1, 5))
        labels = rng.integers(0, num_classes, n)
        scores = rng.random(n).astype(np.float32)
        for store in (everything, ranks[image % 3]):
            store.add(image, labels, scores, np.zeros((n, 4)))
    summaries = [(s.detections()['labels'], s.detections()['scores'])
                 for s in ranks]
    thresholds = kth_best_scores(summaries, k, num_classes)
    # by a loop: the k-th largest score of each class over all detections
    all_labels = np.concatenate([s[0] for s in summaries])
    all_scores = np.concatenate([s[1] for s in summaries])
    for c in range(num_classes):
        assert thresholds[c] == sorted(all_scores[all_labels == c])[-k]
    for store in ranks:
        store.drop(min_scores=thresholds)
    assert sum(len(s) for s in ranks) == k * num_classes  # no ties
    merged = TopKPerClassStore(k=k, with_masks=False)
    for store in ranks:
        merged.merge(store)
    assert sorted(merged.detections()['scores'].tolist()) == sorted(
        everything.detections()['scores'].tolist())


def test_contrastive_roi_head_takes_the_ap_fixed_setting():
    from mmlt.integrations.mmdet import (ContrastiveRoIHead,
                                         PerClassTopKRoIHead)
    assert issubclass(ContrastiveRoIHead, PerClassTopKRoIHead)


def test_two_processes_share_their_budgets(ann_file, monkeypatch):
    """_share_budgets with a fake two-process all_gather (threads): the
    padded repeat of image 1 is dropped on the second process, and after
    the score exchange the two stores hold exactly the single-process
    budget."""
    import threading

    from mmlt.integrations.mmdet import lvis_fixed_metric
    barrier, slots, local = threading.Barrier(2), [None, None], \
        threading.local()

    def all_gather_object(obj):
        slots[local.rank] = obj
        barrier.wait()
        gathered = list(slots)
        barrier.wait()
        return gathered

    monkeypatch.setattr(lvis_fixed_metric, 'all_gather_object',
                        all_gather_object)
    monkeypatch.setattr(lvis_fixed_metric, 'get_rank', lambda: local.rank)
    options = dict(ann_file=ann_file, metric='bbox', dets_per_class=2,
                   ap_types=('fixed', ), out_dir=False)
    samples = {s['img_id']: s for s in data_samples(tiny_lvis(), DETECTIONS)}
    single = LVISFixedMetric(**options)
    single.process({}, list(samples.values()))
    ranks = [LVISFixedMetric(**options) for _ in range(2)]
    ranks[0].process({}, [samples[i] for i in (1, 3, 5)])
    ranks[1].process({}, [samples[i] for i in (2, 4, 1)])  # 1: padding

    def run(rank):
        local.rank = rank
        ranks[rank]._share_budgets()

    threads = [threading.Thread(target=run, args=(r, )) for r in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert ranks[1]._stores['bbox'].image_ids == {2, 4}
    held = sorted(
        (int(i), int(c), float(s)) for store in ranks
        for i, c, s in zip(*(store._stores['bbox'].detections()[k]
                             for k in ('image_ids', 'labels', 'scores'))))
    expected = single._stores['bbox'].detections()
    assert held == sorted(
        zip(expected['image_ids'].tolist(), expected['labels'].tolist(),
            expected['scores'].tolist()))
    assert len(held) == 4  # 2 classes x 2


def test_format_only_writes_the_standard_files_only(ann_file, tmp_path):
    metrics = evaluate(ann_file, DETECTIONS, tmp_path, metric='bbox',
                       format_only=True,
                       outfile_prefix=str(tmp_path / 'results'))
    assert metrics == {}
    detections = json.loads((tmp_path / 'results.bbox.json').read_text())
    assert len(detections) == len(DETECTIONS)
    assert not (tmp_path / 'lvis_per_class_ap.csv').exists()


def test_out_dir_comes_from_set_out_dir_not_from_the_logger(
        ann_file, tmp_path):
    """A run's log file says nothing about where the per-class files go:
    only ``out_dir`` or :meth:`set_out_dir` (MetricOutDirHook) does."""
    log_dir = tmp_path / 'work' / 'timestamp'
    log_dir.mkdir(parents=True)
    # the layout of a runner's log: <work_dir>/<timestamp>/<timestamp>.log
    logger = MMLogger.get_instance(
        'lvis_fixed_out_dir', log_file=str(log_dir / 'timestamp.log'))
    options = dict(ann_file=ann_file, metric=['bbox', 'segm'], out_dir=None)
    samples = data_samples(tiny_lvis(), DETECTIONS)
    try:
        metric = LVISFixedMetric(**options)
        metric.process({}, samples)
        plain = metric.evaluate(len(samples))
    finally:
        MMLogger._instance_dict.pop(logger.instance_name)
        for handler in logger.handlers[:]:
            handler.close()
            logger.removeHandler(handler)
    assert not list((tmp_path / 'work').rglob('lvis_per_class_ap.*'))

    metric = LVISFixedMetric(**options)
    metric.set_out_dir(str(tmp_path / 'given'))
    metric.process({}, samples)
    assert metric.evaluate(len(samples)) == plain
    assert (tmp_path / 'given' / 'lvis_per_class_ap.csv').exists()
    # the standard path leaves the metric's own options as they were
    assert metric.metrics == ['bbox', 'segm'] and metric.classwise is False


def test_short_lists_are_named_and_counted(ann_file, tmp_path, monkeypatch):
    """A warning names the classes with fewer than dets_per_class
    detections (with their counts), and the CSV has the counts."""
    from mmlt.integrations.mmdet import lvis_fixed_metric
    warnings = []

    class Logger:
        def warning(self, message):
            warnings.append(message)

        def info(self, *args):
            pass

    monkeypatch.setattr(lvis_fixed_metric.MMLogger, 'get_current_instance',
                        staticmethod(lambda: Logger()))
    # A has 4 detections, B 4: a budget of 4 is full, 5 is not
    evaluate(ann_file, DETECTIONS, tmp_path, metric='bbox', dets_per_class=4)
    assert warnings == []
    evaluate(ann_file, DETECTIONS, tmp_path, metric='bbox', dets_per_class=5)
    (message, ) = warnings
    assert '2 of 2 classes have fewer than dets_per_class=5' in message
    assert 'thing_a (4)' in message and 'thing_b (4)' in message
    with open(tmp_path / 'lvis_per_class_ap.csv') as f:
        rows = list(csv.DictReader(f))
    by_loop = [sum(1 for d in DETECTIONS if d[1] == label)
               for label in (A, B)]
    assert [int(r['bbox_fixed_dets']) for r in rows] == by_loop
