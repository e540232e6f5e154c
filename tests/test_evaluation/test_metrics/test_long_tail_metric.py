import csv
import math

import numpy as np
import pytest
import torch
from mmengine.evaluator import Evaluator
from mmengine.structures import BaseDataElement

from mmlt.evaluation.metrics import LongTailAccuracy, split_classes_by_count

# Training counts: many = {0}, medium = {1, 2, 3} (100 and 20 are inclusive),
# few = {4, 5}.
CLASS_COUNTS = [150, 100, 50, 20, 19, 5]
NUM_CLASSES = len(CLASS_COUNTS)

# (gt, first choice, second choice). Hand count:
#   class 0: 3/4 top-1, 4/4 top-2      class 1: 1/2, 1/2
#   class 2: 2/2, 2/2                  class 3: no test sample
#   class 4: 0/1, 1/1                  class 5: 1/3, 1/3
# top-1 = 7/12, top-2 = 9/12; many = 75; medium = mean(50, 100) = 75;
# few = mean(0, 100/3).
SAMPLES = [(0, 0, 1), (0, 0, 2), (0, 0, 3), (0, 1, 0), (1, 1, 0), (1, 0, 2),
           (2, 2, 0), (2, 2, 1), (4, 5, 4), (5, 5, 0), (5, 0, 1), (5, 1, 2)]
EXPECTED = {
    'top1': 100 * 7 / 12,
    'top2': 100 * 9 / 12,
    'many': 75.0,
    'medium': 75.0,
    'few': 100 / 6,
}


def _scores(first, second):
    score = torch.full((NUM_CLASSES, ), 0.1 / (NUM_CLASSES - 2))
    score[first] = 0.6
    score[second] = 0.3
    return score


def _as_dicts():
    # What mmpretrain's DataSample.to_dict() gives: tensors, gt of shape (1,).
    return [
        dict(
            gt_label=torch.tensor([gt]),
            pred_score=_scores(first, second),
            pred_label=torch.tensor([first]))
        for gt, first, second in SAMPLES
    ]


def test_groups():
    groups = split_classes_by_count(CLASS_COUNTS)
    assert groups.tolist() == ['many', 'medium', 'medium', 'medium', 'few',
                               'few']
    custom = split_classes_by_count(CLASS_COUNTS, many_threshold=50,
                                    few_threshold=6)
    assert custom.tolist() == ['many', 'many', 'medium', 'medium', 'medium',
                               'few']
    with pytest.raises(ValueError, match='few_threshold'):
        split_classes_by_count(CLASS_COUNTS, many_threshold=10,
                               few_threshold=20)


def test_hand_computed_example(tmp_path):
    out_file = tmp_path / 'sub' / 'per_class.csv'
    metric = LongTailAccuracy(
        class_counts=CLASS_COUNTS, topk=(1, 2), out_file=str(out_file))
    metric.dataset_meta = dict(classes=['a', 'b', 'c', 'd', 'e', 'f'])
    batch = _as_dicts()
    metric.process(None, batch[:5])
    metric.process(None, batch[5:])
    results = metric.evaluate(len(SAMPLES))
    assert set(results) == {f'lt/{k}' for k in EXPECTED}
    for key, value in EXPECTED.items():
        assert results[f'lt/{key}'] == pytest.approx(value, abs=1e-9)

    with open(out_file, newline='') as f:
        rows = list(csv.DictReader(f))
    assert [r['class_name'] for r in rows] == ['a', 'b', 'c', 'd', 'e', 'f']
    assert [int(r['train_count']) for r in rows] == CLASS_COUNTS
    assert [int(r['test_count']) for r in rows] == [4, 2, 2, 0, 1, 3]
    assert [int(r['correct']) for r in rows] == [3, 1, 2, 0, 0, 1]
    assert [r['group'] for r in rows] == [
        'many', 'medium', 'medium', 'medium', 'few', 'few'
    ]
    accuracies = [float(r['accuracy']) if r['accuracy'] else None
                  for r in rows]
    assert accuracies[3] is None
    expected_acc = [75.0, 50.0, 100.0, None, 0.0, 100 / 3]
    for got, want in zip(accuracies, expected_acc):
        if want is not None:
            assert got == pytest.approx(want, abs=1e-4)


class _Sample:
    """An object with DataSample-like attributes."""

    def __init__(self, gt, first, second):
        self.gt_label = torch.tensor([gt])
        self.pred_score = _scores(first, second)


def test_objects_and_pred_label_only():
    metric = LongTailAccuracy(class_counts=CLASS_COUNTS, topk=2)
    metric.process(None, [_Sample(*s) for s in SAMPLES])
    results = metric.evaluate(len(SAMPLES))
    assert results['lt/top2'] == pytest.approx(EXPECTED['top2'])
    assert results['lt/few'] == pytest.approx(EXPECTED['few'])

    labels_only = LongTailAccuracy(class_counts=CLASS_COUNTS, prefix='val')
    labels_only.process(None, [
        dict(gt_label=gt, pred_label=torch.tensor([first]))
        for gt, first, _ in SAMPLES
    ])
    results = labels_only.evaluate(len(SAMPLES))
    assert results['val/top1'] == pytest.approx(EXPECTED['top1'])
    assert results['val/medium'] == pytest.approx(EXPECTED['medium'])

    needs_scores = LongTailAccuracy(class_counts=CLASS_COUNTS, topk=(1, 5))
    with pytest.raises(ValueError, match='pred_score'):
        needs_scores.process(None, [dict(gt_label=0, pred_label=0)])


def test_through_evaluator_with_data_elements():
    evaluator = Evaluator(
        dict(type='mmlt.LongTailAccuracy', class_counts=CLASS_COUNTS))
    elements = []
    for gt, first, second in SAMPLES:
        element = BaseDataElement()
        element.gt_label = torch.tensor([gt])
        element.pred_score = _scores(first, second)
        elements.append(element)
    evaluator.process(elements[:7])
    evaluator.process(elements[7:])
    results = evaluator.evaluate(len(SAMPLES))
    assert results['lt/top1'] == pytest.approx(EXPECTED['top1'])
    assert results['lt/many'] == pytest.approx(EXPECTED['many'])


def test_empty_group_is_nan():
    metric = LongTailAccuracy(class_counts=[500, 300, 200])
    metric.process(None, [
        dict(gt_label=torch.tensor([y]), pred_label=torch.tensor([p]))
        for y, p in [(0, 0), (1, 0), (2, 2), (2, 2)]
    ])
    results = metric.evaluate(4)
    assert results['lt/many'] == pytest.approx((100 + 0 + 100) / 3)
    assert math.isnan(results['lt/medium']) and math.isnan(results['lt/few'])


@pytest.mark.slow
def test_counts_from_train_dataset(tmp_path):
    split = tmp_path / 'train.txt'
    labels = np.repeat(np.arange(NUM_CLASSES), CLASS_COUNTS)
    split.write_text(''.join(f'img_{i}.jpg {y}\n'
                             for i, y in enumerate(labels)))
    metric = LongTailAccuracy(
        train_dataset=dict(
            type='mmlt.LongTailImageList',
            ann_file=str(split),
            num_classes=NUM_CLASSES,
            check_files=False))
    assert metric.class_counts.tolist() == CLASS_COUNTS
    metric.process(None, _as_dicts())
    assert metric.evaluate(12)['lt/few'] == pytest.approx(EXPECTED['few'])


def test_invalid_arguments():
    with pytest.raises(ValueError, match='exactly one'):
        LongTailAccuracy()
    with pytest.raises(ValueError, match='class_counts'):
        LongTailAccuracy(class_counts=[10, -1])
    with pytest.raises(ValueError, match='topk'):
        LongTailAccuracy(class_counts=[10], topk=0)
    metric = LongTailAccuracy(class_counts=[10, 10])
    metric.process(None, [dict(gt_label=5, pred_label=0)])
    with pytest.raises(ValueError, match='outside'):
        metric.evaluate(1)


def test_mmpretrain_data_samples():
    structures = pytest.importorskip('mmpretrain.structures')
    evaluator = Evaluator(
        dict(type='mmlt.LongTailAccuracy', class_counts=CLASS_COUNTS,
             topk=(1, 2)))
    samples = []
    for gt, first, second in SAMPLES:
        sample = structures.DataSample().set_gt_label(gt)
        sample.set_pred_score(_scores(first, second))
        samples.append(sample)
    evaluator.process(samples)
    results = evaluator.evaluate(len(SAMPLES))
    for key, value in EXPECTED.items():
        assert results[f'lt/{key}'] == pytest.approx(value, abs=1e-9)
