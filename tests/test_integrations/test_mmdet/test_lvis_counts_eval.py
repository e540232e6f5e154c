"""LVIS class priors from the annotation file, and the official LVIS
evaluation on this stack (numpy 2 with mmlt's lvis-api shim)."""
import copy
import json

import numpy as np
import pytest

pytest.importorskip('mmdet')
pytest.importorskip('lvis')

import mmlt  # noqa: E402,F401  (applies the numpy shim for lvis)
from mmlt.datasets.lt_base import class_counts  # noqa: E402
from mmlt.integrations.mmdet import LVISV1WithClassCounts  # noqa: E402
from lvis_reference import lvis_class_counts  # noqa: E402


def square(x, y, side):
    return dict(
        bbox=[x, y, side, side],
        area=side * side,
        segmentation=[[x, y, x, y + side, x + side, y + side, x + side, y]])


def tiny_lvis():
    """Three 64x64 images, categories 1 (r), 2 (c), 3 (f), listed in a
    non-sorted id order to check that counts follow the file's order."""
    images = [
        dict(
            id=1,
            height=64,
            width=64,
            coco_url='http://images.cocodataset.org/val2017/000000000001.jpg',
            neg_category_ids=[1],
            not_exhaustive_category_ids=[3]),
        dict(
            id=2,
            height=64,
            width=64,
            coco_url='http://images.cocodataset.org/val2017/000000000002.jpg',
            neg_category_ids=[3],
            not_exhaustive_category_ids=[]),
        dict(
            id=3,
            height=64,
            width=64,
            coco_url='http://images.cocodataset.org/val2017/000000000003.jpg',
            neg_category_ids=[],
            not_exhaustive_category_ids=[]),
    ]
    annotations = [
        dict(id=1, image_id=1, category_id=3, **square(4, 4, 20)),
        dict(id=2, image_id=1, category_id=2, **square(34, 34, 24)),
        dict(id=3, image_id=2, category_id=2, **square(8, 30, 22)),
        dict(id=4, image_id=2, category_id=1, **square(36, 4, 18)),
        dict(id=5, image_id=3, category_id=2, **square(2, 2, 16)),
        dict(id=6, image_id=3, category_id=2, **square(30, 30, 26)),
    ]
    categories = [
        dict(id=3, name='frequent_thing', frequency='f'),
        dict(id=1, name='rare_thing', frequency='r'),
        dict(id=2, name='common_thing', frequency='c'),
    ]
    return dict(images=images, annotations=annotations, categories=categories)


def write_json(tmp_path, content, name='lvis.json'):
    path = tmp_path / name
    path.write_text(json.dumps(content))
    return str(path)


def test_reference_counts_follow_the_file_order():
    content = tiny_lvis()
    # by hand: category 3 (label 0): 1 instance, 1 image; category 1 (label
    # 1): 1, 1; category 2 (label 2): 4 instances in 3 images
    assert lvis_class_counts(content, 'instance') == [1, 1, 4]
    assert lvis_class_counts(content, 'image') == [1, 1, 3]


@pytest.mark.parametrize('mode', ['instance', 'image'])
def test_dataset_counts_reach_class_counts_hook(tmp_path, mode):
    from mmengine.dataset import ClassBalancedDataset
    path = write_json(tmp_path, tiny_lvis())
    dataset = LVISV1WithClassCounts(
        ann_file=path,
        data_prefix=dict(img=''),
        class_counts_mode=mode,
        metainfo=dict(classes=('frequent_thing', 'rare_thing',
                               'common_thing')),
        pipeline=[])
    expected = lvis_class_counts(path, mode)
    assert dataset.class_counts.tolist() == expected
    # the hook's reader unwraps repeat-factor sampling and keeps the file's
    # counts (not the resampled stream's)
    wrapped = ClassBalancedDataset(dataset, oversample_thr=0.9)
    assert len(wrapped) > len(dataset)
    assert class_counts(wrapped).tolist() == expected
    # a wrong mode is refused before the file is read
    with pytest.raises(ValueError, match='mode'):
        LVISV1WithClassCounts(ann_file=path, class_counts_mode='boxes')


def perfect_detections(content, with_masks):
    from pycocotools import mask as mask_utils
    detections = []
    for ann in content['annotations']:
        det = dict(
            image_id=ann['image_id'],
            category_id=ann['category_id'],
            bbox=list(ann['bbox']),
            score=1.0)
        if with_masks:
            rle = mask_utils.merge(
                mask_utils.frPyObjects(ann['segmentation'], 64, 64))
            rle['counts'] = rle['counts'].decode()
            det['segmentation'] = rle
        detections.append(det)
    return detections


def run_lvis_eval(gt_path, detections, iou_type):
    from lvis import LVIS, LVISEval, LVISResults
    gt = LVIS(gt_path)
    evaluator = LVISEval(gt, LVISResults(gt, detections), iou_type)
    evaluator.run()  # evaluate, accumulate (np.float there), summarize
    return evaluator.get_results()


@pytest.mark.parametrize('iou_type', ['bbox', 'segm'])
def test_official_lvis_eval_perfect_detections(tmp_path, iou_type):
    content = tiny_lvis()
    path = write_json(tmp_path, content)
    results = run_lvis_eval(path, perfect_detections(content,
                                                     iou_type == 'segm'),
                            iou_type)
    for key in ('AP', 'AP50', 'AP75', 'APr', 'APc', 'APf'):
        assert results[key] == pytest.approx(1.0), key


def test_official_lvis_eval_federated_rules(tmp_path):
    """A false positive counts only on images that list its category as
    negative, and never on images where the category is not exhaustive."""
    content = tiny_lvis()
    path = write_json(tmp_path, content)
    perfect = perfect_detections(content, False)

    def with_false_positive(image_id):
        detections = copy.deepcopy(perfect)
        # category 3, scored above its true positive (1.0 > 0.9)
        for det in detections:
            if det['category_id'] == 3:
                det['score'] = 0.9
        detections.append(
            dict(
                image_id=image_id,
                category_id=3,
                bbox=[40., 40., 20., 20.],
                score=1.0))
        return detections

    # image 2 lists category 3 as verified absent: precision 1/2 at full
    # recall, so APf = 0.5 and AP = (1 + 1 + 0.5) / 3
    results = run_lvis_eval(path, with_false_positive(2), 'bbox')
    assert results['APf'] == pytest.approx(0.5)
    assert results['APr'] == pytest.approx(1.0)
    assert results['AP'] == pytest.approx(2.5 / 3)
    # image 3 neither has nor denies category 3: the detection is ignored
    results = run_lvis_eval(path, with_false_positive(3), 'bbox')
    assert results['APf'] == pytest.approx(1.0)
    # image 1 has category 3 but not exhaustively annotated: ignored too
    results = run_lvis_eval(path, with_false_positive(1), 'bbox')
    assert results['APf'] == pytest.approx(1.0)


def test_lvis_modules_see_numpy_aliases():
    import lvis.eval
    from numpy.lib import NumpyVersion
    assert lvis.eval.np.float is float
    if NumpyVersion(np.__version__) >= '1.24.0':
        # only the lvis modules see the alias, numpy itself is untouched
        assert not hasattr(np, 'float')


# ---------------------------------------------- priors of the sampled stream
def tiny_dataset(tmp_path, mode):
    return LVISV1WithClassCounts(
        ann_file=write_json(tmp_path, tiny_lvis()),
        data_prefix=dict(img=''),
        class_counts_mode=mode,
        metainfo=dict(classes=('frequent_thing', 'rare_thing',
                               'common_thing')),
        pipeline=[])


@pytest.mark.parametrize('mode, expected', [('instance', [2, 2, 6]),
                                            ('image', [2, 2, 5])])
def test_stream_counts_under_repeat_factor_sampling(tmp_path, mode,
                                                    expected):
    """By hand, labels (file order) 0 = cat 3, 1 = cat 1, 2 = cat 2; images
    I1: [0, 2], I2: [2, 1], I3: [2, 2]. Image fractions f = 1/3, 1/3, 1; with
    t = 0.75, r(c) = max(1, sqrt(t / f)) = 1.5, 1.5, 1, so I1 and I2 repeat
    ceil(1.5) = 2 times and I3 once: instances 0: 2, 1: 2, 2: 2 + 2 + 2*1 =
    6 (images: 2 + 2 + 1 = 5 for label 2)."""
    from mmengine.dataset import ClassBalancedDataset
    from mmlt.datasets.stream_counts import stream_class_counts
    dataset = tiny_dataset(tmp_path, mode)
    wrapped = ClassBalancedDataset(dataset, oversample_thr=0.75)
    assert len(wrapped) == 5
    assert stream_class_counts(wrapped).tolist() == expected
    # without a re-sampling scheme the stream is the file
    assert stream_class_counts(dataset).tolist() == \
        dataset.class_counts.tolist()


def test_stream_counts_under_mmdet_class_aware_sampling(tmp_path):
    """cat_dict: label 0 -> [I1], 1 -> [I2], 2 -> [I1, I2, I3]; C' = 3,
    N = 3 draws: w(I1) = w(I2) = 3/3 * (1 + 1/3) = 4/3, w(I3) = 1/3, so
    instance counts 0: 4/3, 1: 4/3, 2: 4/3 + 4/3 + 2 * 1/3 = 10/3."""
    from mmdet.datasets.samplers import ClassAwareSampler
    from mmlt.datasets.stream_counts import (expected_draws,
                                             stream_class_counts)
    dataset = tiny_dataset(tmp_path, 'instance')
    sampler = ClassAwareSampler(dataset, seed=0)
    np.testing.assert_allclose(expected_draws(dataset, sampler),
                               [4 / 3, 4 / 3, 1 / 3])
    np.testing.assert_allclose(
        stream_class_counts(dataset, sampler), [4 / 3, 4 / 3, 10 / 3])
    # ... and what the sampler really draws, over many epochs
    draws = np.zeros(3)
    epochs = 600
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        np.add.at(draws, list(sampler), 1)
    np.testing.assert_allclose(draws / epochs, [4 / 3, 4 / 3, 1 / 3],
                               atol=0.05)


def test_class_counts_hook_stream_prior(tmp_path):
    """ClassCountsHook(prior='stream') gives the losses the stream's counts
    and the metrics the file's."""
    from types import SimpleNamespace

    import torch
    from mmengine.dataset import ClassBalancedDataset

    from mmlt.engine.hooks import ClassCountsHook
    from mmlt.engine.protocols import NeedsClassCounts

    class Target(torch.nn.Module, NeedsClassCounts):
        def set_class_counts(self, counts):
            self.counts = np.asarray(counts).tolist()

    dataset = ClassBalancedDataset(tiny_dataset(tmp_path, 'instance'),
                                   oversample_thr=0.75)
    loader = SimpleNamespace(dataset=dataset, sampler=None)
    model = torch.nn.Sequential(Target())
    metric = Target()
    runner = SimpleNamespace(
        model=model, train_dataloader=loader,
        logger=SimpleNamespace(info=print),
        val_loop=SimpleNamespace(evaluator=SimpleNamespace(
            metrics=[metric])))
    ClassCountsHook(prior='stream', pseudo_count=1).before_train(runner)
    assert model[0].counts == [3, 3, 7]  # [2, 2, 6] + 1
    assert metric.counts == [1, 1, 4]  # the file's
    with pytest.raises(ValueError, match='prior'):
        ClassCountsHook(prior='sampled')


def test_stream_prior_reads_the_batch_samplers_sampler(tmp_path):
    """With a batch sampler in the config (every LVIS config's
    AspectRatioBatchSampler) MMEngine builds the DataLoader with
    ``sampler=None``, so ``loader.sampler`` is torch's SequentialSampler;
    the stream prior must come from the configured class-aware sampler:
    hand-worked counts of the test above, 4/3, 4/3, 10/3, not the file's
    1, 1, 4."""
    from types import SimpleNamespace

    import torch
    from mmengine.runner import Runner

    from mmlt.engine.hooks import ClassCountsHook
    from mmlt.engine.protocols import NeedsClassCounts

    class Target(torch.nn.Module, NeedsClassCounts):
        def set_class_counts(self, counts):
            self.counts = np.asarray(counts, dtype=float)

    from mmdet.utils import register_all_modules
    register_all_modules(init_default_scope=True)
    loader = Runner.build_dataloader(
        dict(
            batch_size=2,
            num_workers=0,
            sampler=dict(type='ClassAwareSampler', seed=0),
            batch_sampler=dict(type='AspectRatioBatchSampler'),
            dataset=tiny_dataset(tmp_path, 'instance')),
        seed=0)
    assert isinstance(loader.sampler, torch.utils.data.SequentialSampler)
    model = torch.nn.Sequential(Target())
    runner = SimpleNamespace(
        model=model, train_dataloader=loader,
        logger=SimpleNamespace(info=print), val_loop=None)
    ClassCountsHook(prior='stream').before_train(runner)
    np.testing.assert_allclose(model[0].counts, [4 / 3, 4 / 3, 10 / 3])
