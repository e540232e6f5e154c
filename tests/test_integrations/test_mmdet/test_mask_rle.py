"""Masks pasted and RLE-encoded in their boxes' windows
(``mmlt.integrations.mmdet.mask_rle``) give MMDetection's RLEs bit for bit:
against ``_do_paste_mask`` on the whole image (its GPU path) with
``encode_mask_results``, against ``FCNMaskHead.predict_by_feat`` (its CPU
path), by hand on a small case, and through the AP-fixed head's test step."""
import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch

pytest.importorskip('mmdet')

from mmdet.models.roi_heads.mask_heads import FCNMaskHead  # noqa: E402
from mmdet.models.roi_heads.mask_heads.fcn_mask_head import \
    _do_paste_mask  # noqa: E402
from mmdet.structures.mask import encode_mask_results  # noqa: E402
from mmengine.config import ConfigDict  # noqa: E402
from mmengine.structures import InstanceData  # noqa: E402

from mmlt.integrations.mmdet.mask_rle import (  # noqa: E402
    mask_windows, paste_and_encode_masks, window_rle_counts)
from test_ap_fixed_end_to_end import (CONFIG, DAVE,  # noqa: E402,F401
                                      DesignedDetector, toy_root)

H, W, M, C = 37, 53, 28, 4


def hostile_detections(num=240, seed=0):
    """Boxes of every awkward kind on a 37 x 53 image: zero width or height,
    leaving the image on each side, larger than it, tiny, and masks that are
    saturated (probability 1.0: non-zero up to half a mask cell outside the
    box), empty or full."""
    generator = torch.Generator().manual_seed(seed)
    corner = torch.rand(num, 2, generator=generator) * torch.tensor(
        [W * 1.4, H * 1.4]) - torch.tensor([W * 0.2, H * 0.2])
    size = torch.rand(num, 2, generator=generator) * torch.tensor(
        [W, H]) * torch.rand(num, 1, generator=generator) * 1.5
    boxes = torch.cat([corner, corner + size], 1)
    boxes[:10, 2] = boxes[:10, 0]  # zero width
    boxes[10:20, 3] = boxes[10:20, 1]  # zero height
    boxes[20:30] = torch.tensor([-5., -3., W + 4., H + 6.])  # beyond it
    boxes[30:40, 2:] = boxes[30:40, :2] + 0.3  # under a pixel
    logits = torch.randn(num, C, M, M, generator=generator) * 4
    logits[40:60] = 40.  # probability exactly 1.0 in float32
    logits[60:70] = -40.
    labels = torch.randint(C, (num, ), generator=generator)
    return boxes, logits, labels


def full_image_rles(probs, boxes, img_h, img_w, threshold):
    """MMDetection's GPU path: every mask pasted into the whole image."""
    pasted, _ = _do_paste_mask(probs[:, None], boxes, img_h, img_w,
                               skip_empty=False)
    return encode_mask_results((pasted >= threshold).numpy())


@pytest.mark.parametrize('threshold', [1e-6, 0.5, 0.9])
@pytest.mark.parametrize('pixels_per_batch', [1, 2**26])
def test_windowed_rles_equal_the_full_image_paste(threshold,
                                                  pixels_per_batch):
    boxes, logits, labels = hostile_detections()
    meta = dict(scale_factor=(1.0, 1.0), ori_shape=(H, W))
    out_boxes, rles = paste_and_encode_masks(
        logits, boxes, labels, meta, threshold, rescale=True,
        pixels_per_batch=pixels_per_batch)
    probs = logits.sigmoid()[torch.arange(len(labels)), labels]
    expected = full_image_rles(probs, boxes, H, W, threshold)
    assert [i for i, (a, b) in enumerate(zip(rles, expected)) if a != b] == []
    assert len(rles) == len(expected)
    torch.testing.assert_close(out_boxes, boxes, rtol=0, atol=0)


def test_a_low_threshold_reaches_beyond_the_box():
    """A pasted mask of probability 1 has value ``1 + l`` at ``l`` cells
    outside the box, so at threshold 0.2 it is set up to ``0.4`` of a half
    cell (here 300 / 56 pixels) outside: beyond MMDetection's 1-pixel CPU
    margin (columns 49 to 351), inside the windows."""
    box = torch.tensor([[50.3, 20.6, 350.1, 180.2]])
    logits = torch.full((1, 1, M, M), 40.)
    meta = dict(scale_factor=(1.0, 1.0), ori_shape=(200, 400))
    _, rles = paste_and_encode_masks(logits, box, torch.zeros(1).long(), meta,
                                     0.2, True)
    assert rles == full_image_rles(logits[:, 0].sigmoid(), box, 200, 400, 0.2)
    columns = np.flatnonzero(mask_util.decode(rles[0]).any(0))
    assert columns.min() < 49 and columns.max() > 351


@pytest.mark.parametrize('rescale', [True, False])
@pytest.mark.parametrize('class_agnostic', [False, True])
def test_windowed_path_equals_fcn_mask_head(rescale, class_agnostic):
    """``FCNMaskHead.predict_by_feat`` (CPU: one mask at a time, 1-pixel
    margin) and ``encode_mask_results``, away from the cases where its CPU
    and GPU paths differ (saturated masks, degenerate boxes)."""
    boxes, logits, labels = hostile_detections(seed=1)
    # as a detector gives them: inside the (W x 1.5 H) network input (its
    # CPU path fails on a box outside the image)
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, W)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, 1.5 * H)
    # Zero width or height: MMDetection's CPU path samples a 1-pixel strip,
    # its GPU path (and the windows) the whole row or column.
    proper = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    boxes, logits, labels = boxes[proper], logits[proper], labels[proper]
    logits = logits.clamp(-12, 12)
    if class_agnostic:
        logits = logits[:, :1]
    head = FCNMaskHead(num_classes=C, class_agnostic=class_agnostic)
    meta = dict(scale_factor=(0.5, 0.75), ori_shape=(2 * H, 2 * W))
    cfg = ConfigDict(mask_thr_binary=0.5)
    expected = head.predict_by_feat(
        (logits, ), [InstanceData(bboxes=boxes.clone(), labels=labels)],
        [meta], cfg, rescale=rescale)[0]
    out_boxes, rles = paste_and_encode_masks(logits, boxes, labels, meta, 0.5,
                                             rescale, class_agnostic)
    assert rles == encode_mask_results(expected.masks.numpy())
    torch.testing.assert_close(out_boxes, expected.bboxes, rtol=0, atol=0)


def test_counts_of_a_hand_worked_case():
    """A 4 x 3 image (h = 4, w = 3), column-major pixels 0..11; the window
    (x 1-2, y 1-3) holds the mask below, so the image's pixels 5, 6, 9 and
    the column-crossing run 7..9 are set:

        column 0: 0 0 0 0    pixels 0-3
        column 1: 0 1 1 0    pixels 4-7  (window rows 1-2 set, row 3 not)
        column 2: 0 1 0 0    pixels 8-11
    """
    window_mask = np.array([[[1, 1], [1, 0], [0, 0]]], dtype=bool)
    windows = np.array([[1, 1, 3, 4]])
    counts, = window_rle_counts(window_mask, windows, img_h=4, img_w=3)
    # zeros 0-4, ones 5-6, zeros 7-8, one 9, zeros 10-11
    assert counts.tolist() == [5, 2, 2, 1, 2]
    # A window as tall as the image (x 0-1): pixels 2, 3 (column 0) and 4
    # (column 1) form one run across the columns.
    window_mask = np.array([[[0, 1], [0, 0], [1, 0], [1, 0]]], dtype=bool)
    counts, = window_rle_counts(window_mask, np.array([[0, 0, 2, 4]]), 4, 3)
    assert counts.tolist() == [2, 3, 7]
    # a run that ends at the image's last pixel (column 2 full)
    counts, = window_rle_counts(np.ones((1, 4, 1), dtype=bool),
                                np.array([[2, 0, 3, 4]]), 4, 3)
    assert counts.tolist() == [8, 4]


def test_windows_bound_every_non_zero_pixel():
    boxes, logits, labels = hostile_detections(seed=2)
    windows = mask_windows(boxes, M, H, W)
    probs = logits.sigmoid()[torch.arange(len(labels)), labels]
    pasted, _ = _do_paste_mask(probs[:, None], boxes, H, W, skip_empty=False)
    for mask, (x0, y0, x1, y1) in zip(pasted, windows.tolist()):
        outside = mask.clone()
        outside[y0:y1, x0:x1] = 0
        assert not outside.any()
    assert (windows[:, :2] >= 0).all() and (windows[:, 2] <= W).all() and (
        windows[:, 3] <= H).all()


def test_a_threshold_of_zero_or_less_is_refused():
    boxes, logits, labels = hostile_detections(num=80)
    meta = dict(scale_factor=(1.0, 1.0), ori_shape=(H, W))
    for threshold in (0, -1):
        with pytest.raises(ValueError, match='mask_thr_binary must be > 0'):
            paste_and_encode_masks(logits, boxes, labels, meta, threshold,
                                   True)
    assert paste_and_encode_masks(logits[:0], boxes[:0], labels[:0], meta,
                                  0.5, True)[1] == []


def test_the_ap_fixed_heads_test_step_gives_mmdetections_rles(
        toy_root, monkeypatch):
    """The toy Mask R-CNN's test step with ``mask_chunk`` (real mask head,
    designed boxes): the windowed RLEs and boxes equal those of
    ``FCNMaskHead.predict_by_feat`` with ``encode_mask_results``."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmengine.runner import Runner

    from mmlt.registry import MODELS
    cfg = Config.fromfile(CONFIG)
    init_default_scope('mmdet')
    cfg.test_dataloader.dataset.data_root = toy_root
    cfg.model.test_cfg.rcnn = dict(
        nms=dict(type='nms', iou_threshold=0.5), mask_thr_binary=0.5, **DAVE)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    model.eval()
    design = DesignedDetector(shift=0.0)
    model.rpn_head.predict = design.proposals
    model.roi_head._bbox_forward = design.bbox_forward
    data = next(iter(Runner.build_dataloader(cfg.test_dataloader)))

    def detections():
        model.roi_head.eval()  # a new pass: fresh per-class thresholds
        with torch.no_grad():
            out = model.test_step(data)
        return [(o.pred_instances.bboxes, o.pred_instances.masks)
                for o in out]

    from mmlt.integrations.mmdet import per_class_topk_roi_head as head_module
    calls = []

    def spy(*args, **kwargs):
        calls.append(len(args[0]))
        return paste_and_encode_masks(*args, **kwargs)

    monkeypatch.setattr(head_module, 'paste_and_encode_masks', spy)
    windowed = detections()
    assert len(calls) > 1 and max(calls) <= DAVE['mask_chunk']

    class FullImagePaste(FCNMaskHead):
        def _predict_by_feat_single(self, *args, **kwargs):
            return super()._predict_by_feat_single(*args, **kwargs)

    monkeypatch.setattr(model.roi_head.mask_head, '__class__', FullImagePaste)
    calls.clear()
    full = detections()
    assert calls == []  # the full-image paste
    assert sum(len(masks) for _, masks in windowed) > 10
    for (boxes, masks), (full_boxes, full_masks) in zip(windowed, full):
        assert masks == full_masks
        torch.testing.assert_close(boxes, full_boxes, rtol=0, atol=0)
