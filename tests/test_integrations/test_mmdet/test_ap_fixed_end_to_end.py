"""AP-fixed as Dave et al. run it, through the whole test path: the toy
LVIS set's data pipeline, the toy Mask R-CNN's ``test_step`` (its RPN and box
classifier replaced by designed proposals and logits, its mask head real),
and :class:`mmlt.LVISFixedMetric`.

Lowering one class's classifier logit by 7 nats leaves AP-fixed unchanged
(per-class thresholds, floor 1e-7, no per-image cap) and changes the standard
AP (300 per image there, 5 here); with MMDetection's global 1e-4 and a
per-image cap, the same shift changes AP-fixed too."""
import copy
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.structures import InstanceData

pytest.importorskip('mmdet')
pytest.importorskip('lvis')

from test_toy_lvis_pipeline import FASHION_MNIST, load_builder  # noqa: E402

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..', '..'))
CONFIG = osp.join(REPO, 'configs', 'lvis', 'toy',
                  'mask-rcnn_r18-tiny_fpn_toy-lvis.py')
NUM_CLASSES = 10
SHIFTED = 3  # the class whose logit is lowered
K = 4  # AP-fixed budget: small, so the per-class thresholds bind
DAVE = dict(
    score_thr=1e-7, max_per_img=-1, dets_per_class=K,
    standard_max_per_img=5, standard_score_thr=1e-4, mask_chunk=3)
MMDET = dict(score_thr=1e-4, max_per_img=5)  # a global floor and a cap

pytestmark = pytest.mark.skipif(
    not osp.isdir(FASHION_MNIST),
    reason='Fashion-MNIST IDX files (Debian dataset-fashion-mnist) missing')


@pytest.fixture(scope='module')
def toy_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('toy_lvis_ap_fixed'))
    load_builder().build_toy_lvis(
        root, FASHION_MNIST, n_max=4, imb_factor=4,
        val_images_per_category=3, seed=3)
    return root + '/'


class DesignedDetector:
    """Proposals at the ground truth (two jittered copies) and at 8 random
    boxes per image; each proposal has one live class, with a logit drawn in
    [-2.5, 3] (background 0), every other class at -30 (below any floor).
    The live class's score is then sigmoid(logit), and lowering class
    ``SHIFTED``'s logit changes no other class's score."""

    def __init__(self, shift: float):
        self.shift = shift
        self.logits = []

    def proposals(self, x, batch_data_samples, rescale=False):
        self.logits, results = [], []
        for sample in batch_data_samples:
            generator = torch.Generator().manual_seed(int(sample.img_id))
            gt = sample.gt_instances
            gt_boxes = gt.bboxes.tensor if hasattr(gt.bboxes, 'tensor') \
                else gt.bboxes
            jitter = torch.rand((2 * len(gt_boxes), 4), generator=generator)
            corners = torch.rand((8, 2), generator=generator) * 90
            sizes = 10 + torch.rand((8, 2), generator=generator) * 30
            boxes = torch.cat([
                gt_boxes.repeat(2, 1) + jitter,
                torch.cat([corners, corners + sizes], 1)
            ])
            live = torch.cat([
                gt.labels.repeat(2),
                torch.randint(NUM_CLASSES, (8, ), generator=generator)
            ])
            logits = torch.full((len(boxes), NUM_CLASSES + 1), -30.)
            logits[:, NUM_CLASSES] = 0.
            logits[torch.arange(len(boxes)), live] = -2.5 + 5.5 * torch.rand(
                len(boxes), generator=generator)
            logits[:, SHIFTED] -= self.shift
            self.logits.append(logits)
            results.append(InstanceData(bboxes=boxes,
                                        scores=torch.ones(len(boxes))))
        return results

    def bbox_forward(self, x, rois):
        cls_score = torch.cat(self.logits)
        return dict(cls_score=cls_score,
                    bbox_pred=cls_score.new_zeros(len(rois), 4 * NUM_CLASSES),
                    bbox_feats=None)


def evaluate(toy_root, rcnn_test_cfg, shift, dets_per_class=K,
             standard_only=False):
    """(metrics, detections per image) of the designed detector."""
    from mmengine.config import Config
    from mmengine.evaluator import Evaluator
    from mmengine.registry import init_default_scope
    from mmengine.runner import Runner

    from mmlt.registry import MODELS
    cfg = Config.fromfile(CONFIG)
    init_default_scope('mmdet')
    cfg.test_dataloader.dataset.data_root = toy_root
    cfg.model.test_cfg.rcnn = dict(
        nms=dict(type='nms', iou_threshold=0.5), mask_thr_binary=0.5,
        **rcnn_test_cfg)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    model.eval()
    design = DesignedDetector(shift)
    model.rpn_head.predict = design.proposals
    model.roi_head._bbox_forward = design.bbox_forward
    loader = Runner.build_dataloader(cfg.test_dataloader)
    evaluator = Evaluator(dict(
        type='mmlt.LVISFixedMetric', metric=['bbox', 'segm'],
        ann_file=toy_root + 'annotations/lvis_v1_val.json',
        max_dets_per_img=5, standard_score_thr=1e-4,
        dets_per_class=dets_per_class, out_dir=False))
    if standard_only:  # what StandardAPUntilLastHook does
        model.roi_head.set_standard_only(True)
        evaluator.metrics[0].set_standard_only(True)
    sizes = []
    with torch.no_grad():
        for data in loader:
            outputs = model.test_step(data)
            sizes += [len(out.pred_instances) for out in outputs]
            evaluator.process(outputs, data)
    return evaluator.evaluate(len(loader.dataset)), sizes


def fixed(metrics):
    return {k: v for k, v in metrics.items() if '_fixed_' in k}


def standard(metrics):
    return {k: v for k, v in metrics.items()
            if k.endswith(('bbox_AP', 'segm_AP', 'bbox_APc', 'segm_APc'))}


def test_a_seven_nat_shift_keeps_ap_fixed_and_moves_standard_ap(toy_root):
    before, sizes = evaluate(toy_root, DAVE, shift=0.)
    after, _ = evaluate(toy_root, DAVE, shift=7.)
    assert fixed(after) == fixed(before)
    assert 0 < before['lvis/bbox_fixed_AP'] < 1
    assert standard(after) != standard(before)
    # the thresholds bind: fewer detections than without them, and the
    # same AP-fixed (a detection below a class's K-th best never re-enters)
    unbounded, all_sizes = evaluate(toy_root, dict(DAVE, dets_per_class=10**6),
                                    shift=0.)
    assert sum(sizes) < sum(all_sizes)
    assert fixed(unbounded) == fixed(before)
    assert standard(unbounded) == standard(before)


def test_a_global_floor_and_an_image_cap_break_the_invariance(toy_root):
    """The old setting (what a global 1e-4 and a cap of 5 per image give
    AP-fixed): the same shift changes AP-fixed, so the test above can
    fail."""
    before, _ = evaluate(toy_root, MMDET, shift=0.)
    after, _ = evaluate(toy_root, MMDET, shift=7.)
    assert fixed(after) != fixed(before)


def test_the_standard_path_is_mmdetections_setting(toy_root):
    """With the floor at 1e-7 the metric's standard AP equals the one of
    MMDetection's test setting (score 1e-4, the best 5 per image)."""
    ours, _ = evaluate(toy_root, DAVE, shift=7.)
    mmdet, _ = evaluate(toy_root, dict(score_thr=1e-4, max_per_img=5),
                        shift=7., dets_per_class=K)
    assert standard(ours) == standard(mmdet)


def test_standard_only_mode_is_mmdetections_setting(toy_root):
    """The periodic-validation mode: MMDetection's detections, standard AP
    only, equal to the full pass's standard AP."""
    cheap, sizes = evaluate(toy_root, DAVE, shift=7., standard_only=True)
    full, full_sizes = evaluate(toy_root, DAVE, shift=7.)
    assert not fixed(cheap) and '_pool_' not in ''.join(cheap)
    assert standard(cheap) == standard(full)
    assert max(sizes) <= DAVE['standard_max_per_img']
    assert sum(sizes) < sum(full_sizes)


def test_running_thresholds_keep_the_best_k_of_the_pass():
    """The head's thresholds against a slow loop: over a stream of images,
    the detections it keeps contain every class's K best of the stream."""
    from mmlt.integrations.mmdet.per_class_topk import merge_best_scores
    rng = np.random.default_rng(0)
    k, num_classes = 3, 4
    best = torch.full((num_classes, k), -float('inf'))
    kept, seen = [], []
    for image in range(30):
        n = int(rng.integers(0, 6))
        labels = torch.from_numpy(rng.integers(0, num_classes, n))
        scores = torch.from_numpy(rng.random(n).astype(np.float32))
        above = scores > best[labels, -1]
        kept += [(image, int(c), float(s))
                 for c, s in zip(labels[above], scores[above])]
        seen += [(image, int(c), float(s)) for c, s in zip(labels, scores)]
        best = merge_best_scores(best, scores[above], labels[above])
        for c in range(num_classes):  # the k-th best so far, by a loop
            so_far = sorted((s for _, l, s in seen if l == c), reverse=True)
            expected = so_far[k - 1] if len(so_far) >= k else -float('inf')
            assert float(best[c, -1]) == expected
    for c in range(num_classes):
        top = sorted((d for d in seen if d[1] == c), key=lambda d: -d[2])[:k]
        assert all(d in kept for d in top)
    assert len(kept) < len(seen)


def test_bad_options_name_the_key():
    from mmlt_det_helpers import build_roi_head, features, roi_head_cfg
    from mmlt_det_helpers import proposal_results
    head = build_roi_head(
        roi_head_cfg(
            bbox_head=dict(type='Shared2FCBBoxHead', in_channels=8,
                           fc_out_channels=32, roi_feat_size=7,
                           num_classes=5),
            roi_head_type='mmlt.PerClassTopKRoIHead')).eval()
    cfg = copy.deepcopy(head.test_cfg)
    cfg.dets_per_class = 0
    metas = [dict(img_shape=(64, 64), scale_factor=(1., 1.))] * 2
    with pytest.raises(ValueError, match='dets_per_class'):
        head.predict_bbox(features(), metas, proposal_results(), cfg)
    cfg.dets_per_class = 3
    head.set_standard_only(True)
    with pytest.raises(ValueError, match='standard_score_thr'):
        head.predict_bbox(features(), metas, proposal_results(), cfg)
