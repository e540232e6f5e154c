"""ContrastiveRoIHead / ContrastiveBBoxHead: shapes, which RoIs the
contrastive loss sees, where its gradient goes, and unchanged inference."""
import pytest
import torch
import torch.nn.functional as F

pytest.importorskip('mmdet')

from mmdet.structures.bbox import bbox2roi  # noqa: E402

from mmlt_det_helpers import (BACKGROUND_PROPOSALS, GTS,  # noqa: E402
                              NUM_CLASSES, PROPOSALS, bbox_head_cfg,
                              build_roi_head, features, roi_head_cfg,
                              sampling_results)

CLASS_COUNTS = [50, 30, 10, 5, 2]


def proco_head(seed=0, **kwargs):
    torch.manual_seed(seed)
    head = build_roi_head(roi_head_cfg(bbox_head_cfg(**kwargs)))
    head.bbox_head.contrast_branch.loss.set_class_counts(CLASS_COUNTS)
    return head


def expected_foreground(head, x, results):
    """Shared features and labels of the positive RoIs, computed RoI by RoI
    from the sampling results (not through bbox_loss)."""
    pos_rois = bbox2roi([res.pos_priors for res in results])
    roi_feats = head.bbox_roi_extractor(x[:4], pos_rois)
    _, _, shared = head.bbox_head(roi_feats, return_shared_feats=True)
    labels = torch.cat([res.pos_gt_labels for res in results])
    return shared, labels


def capture_contrast_inputs(head):
    seen = {}
    original = head.bbox_head.contrast_branch.loss.forward

    def spy(features, labels, *args, **kwargs):
        seen['features'] = features.detach().clone()
        seen['labels'] = labels.clone()
        seen['weight'] = kwargs.get('weight')
        return original(features, labels, *args, **kwargs)

    head.bbox_head.contrast_branch.loss.forward = spy
    return seen


@pytest.mark.parametrize('loss_cls,channels', [
    (dict(type='CrossEntropyLoss', use_sigmoid=False), NUM_CLASSES + 1),
    (dict(type='SeesawLoss', num_classes=NUM_CLASSES), NUM_CLASSES + 2),
])
def test_bbox_head_shapes(loss_cls, channels):
    head = build_roi_head(roi_head_cfg(bbox_head_cfg(loss_cls=loss_cls)))
    roi_feats = torch.randn(7, 8, 7, 7)
    cls_score, bbox_pred = head.bbox_head(roi_feats)
    assert cls_score.shape == (7, channels)
    assert bbox_pred.shape == (7, 4 * NUM_CLASSES)
    cls2, bbox2, shared = head.bbox_head(roi_feats, return_shared_feats=True)
    assert shared.shape == (7, 32)
    torch.testing.assert_close(cls2, cls_score)
    torch.testing.assert_close(bbox2, bbox_pred)
    # the shared feature is the ReLU output of the second shared fc
    flat = roi_feats.flatten(1)
    expected = F.relu(head.bbox_head.shared_fcs[1](F.relu(
        head.bbox_head.shared_fcs[0](flat))))
    torch.testing.assert_close(shared, expected)
    z = head.bbox_head.contrast_branch.project(shared)
    assert z.shape == (7, 16)
    torch.testing.assert_close(z.norm(dim=1), torch.ones(7))


def test_contrastive_loss_sees_exactly_the_foreground_rois():
    head = proco_head()
    x = features()
    results = sampling_results(head, PROPOSALS, GTS)
    num_fg = sum(len(res.pos_priors) for res in results)
    num_rois = sum(len(res.priors) for res in results)
    assert 0 < num_fg < num_rois  # background RoIs exist and are left out
    seen = capture_contrast_inputs(head)
    out = head.bbox_loss(x, results)
    assert set(out['loss_bbox']) == {
        'loss_cls', 'acc', 'loss_bbox', 'loss_contrast'
    }
    shared, labels = expected_foreground(head, x, results)
    # ProCo takes every RoI, weight 1 on the foreground ones and 0 on the
    # rest (no boolean selection); the targets list each image's positives
    # first, then its negatives
    selected = torch.cat([
        torch.cat([torch.ones(len(res.pos_priors)),
                   torch.zeros(len(res.neg_priors))]) for res in results
    ]).bool()
    assert seen['weight'].tolist() == selected.float().tolist()
    assert seen['labels'].shape == (num_rois, )
    assert seen['labels'][selected].tolist() == labels.tolist()
    assert (seen['labels'][~selected] == 0).all()  # a valid class index
    # the branch hands the loss one view, view-major: (1, N, p)
    torch.testing.assert_close(
        seen['features'][0][selected],
        head.bbox_head.contrast_branch.project(shared).detach())
    # the estimator counted exactly these RoIs, by class
    estimator = head.bbox_head.contrast_branch.loss.estimator
    assert estimator.current_counts.sum().item() == num_fg
    assert estimator.current_counts.tolist() == torch.bincount(
        labels, minlength=NUM_CLASSES).double().tolist()


def test_loss_contrast_is_weighted_proco_of_projected_features():
    head = proco_head()
    x = features()
    results = sampling_results(head, PROPOSALS, GTS)
    shared, labels = expected_foreground(head, x, results)
    # an independent ProCo loss with the same (fresh) estimator state
    from mmlt.models.losses import ProCoLoss
    reference = ProCoLoss(
        NUM_CLASSES, 16, temperature=0.1, class_counts=CLASS_COUNTS)
    expected = 0.5 * reference(head.bbox_head.contrast_branch.project(shared), labels)
    out = head.bbox_loss(x, results)
    torch.testing.assert_close(out['loss_bbox']['loss_contrast'], expected)


def test_contrastive_gradient_reaches_shared_fcs_only_through_projector():
    head = proco_head()
    results = sampling_results(head, PROPOSALS, GTS)
    out = head.bbox_loss(features(), results)
    out['loss_bbox']['loss_contrast'].backward()
    bbox_head = head.bbox_head
    for fc in bbox_head.shared_fcs:
        assert fc.weight.grad is not None and fc.weight.grad.abs().sum() > 0
    for layer in bbox_head.contrast_branch.projector:
        if isinstance(layer, torch.nn.Linear):
            assert layer.weight.grad.abs().sum() > 0
    # ProCo does not touch the classifier or the box regressor
    assert bbox_head.fc_cls.weight.grad is None
    assert bbox_head.fc_reg.weight.grad is None


def test_bcl_prototypes_come_from_object_classifier_rows():
    torch.manual_seed(0)
    head = build_roi_head(
        roi_head_cfg(bbox_head_cfg(contrast_loss='mmlt.BCLLoss')))
    assert head.bbox_head.contrast_branch.prototype_mlp is not None
    results = sampling_results(head, PROPOSALS, GTS)
    out = head.bbox_loss(features(), results)
    out['loss_bbox']['loss_contrast'].backward()
    grad = head.bbox_head.fc_cls.weight.grad
    assert grad[:NUM_CLASSES].abs().sum(dim=1).min() > 0
    # the background row is not a prototype
    assert grad[NUM_CLASSES].abs().sum() == 0
    assert head.bbox_head.shared_fcs[0].weight.grad.abs().sum() > 0


def test_supcon_branch_trains_shared_fcs():
    torch.manual_seed(0)
    head = build_roi_head(
        roi_head_cfg(bbox_head_cfg(contrast_loss='mmlt.SupConLoss')))
    results = sampling_results(head, PROPOSALS, GTS)
    out = head.bbox_loss(features(), results)
    loss = out['loss_bbox']['loss_contrast']
    assert loss.item() > 0
    loss.backward()
    assert head.bbox_head.shared_fcs[1].weight.grad.abs().sum() > 0


@pytest.mark.parametrize(
    'contrast_loss', ['mmlt.ProCoLoss', 'mmlt.SupConLoss', 'mmlt.BCLLoss'])
def test_no_foreground_gives_connected_zero(contrast_loss):
    torch.manual_seed(0)
    head = build_roi_head(
        roi_head_cfg(bbox_head_cfg(contrast_loss=contrast_loss)))
    if contrast_loss == 'mmlt.ProCoLoss':
        head.bbox_head.contrast_branch.loss.set_class_counts(CLASS_COUNTS)
    results = sampling_results(head, BACKGROUND_PROPOSALS, GTS)
    assert sum(len(res.pos_priors) for res in results) == 0
    out = head.bbox_loss(features(), results)
    loss = out['loss_bbox']['loss_contrast']
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    # every projector parameter is in the graph, with a zero gradient
    for param in head.bbox_head.contrast_branch.projector.parameters():
        assert param.grad is not None and param.grad.abs().sum() == 0


def test_inference_is_that_of_standard_roi_head():
    from mmengine.structures import InstanceData
    head = proco_head(seed=3)
    standard = build_roi_head(
        roi_head_cfg(
            dict(
                type='Shared2FCBBoxHead',
                in_channels=8,
                fc_out_channels=32,
                num_classes=NUM_CLASSES),
            roi_head_type='StandardRoIHead'))
    # the contrastive head is the standard one plus the branch's modules
    extra = set(head.state_dict()) - set(standard.state_dict())
    assert extra and all(
        key.startswith(('bbox_head.contrast_branch.projector.', 'bbox_head.contrast_branch.loss.'))
        for key in extra)
    standard.load_state_dict({
        key: value
        for key, value in head.state_dict().items() if key not in extra
    })
    head.eval()
    standard.eval()

    def fail(*args, **kwargs):
        raise AssertionError('the projector ran at inference')

    head.bbox_head.contrast_branch.projector.forward = fail
    x = features(seed=5)
    metas = [dict(img_shape=(64, 64), scale_factor=(1., 1.))] * 2

    def proposals():
        out = []
        for boxes in PROPOSALS:
            res = InstanceData()
            res.bboxes = torch.tensor(boxes)
            out.append(res)
        return out

    with torch.no_grad():
        ours = head.predict_bbox(x, metas, proposals(), head.test_cfg)
        theirs = standard.predict_bbox(x, metas, proposals(),
                                       standard.test_cfg)
    for a, b in zip(ours, theirs):
        assert len(a) > 0
        torch.testing.assert_close(a.bboxes, b.bboxes)
        torch.testing.assert_close(a.scores, b.scores)
        assert a.labels.tolist() == b.labels.tolist()
    # the estimator is not fed at inference
    estimator = head.bbox_head.contrast_branch.loss.estimator
    assert estimator.current_counts.sum().item() == 0


def test_roi_head_without_branch_is_standard():
    torch.manual_seed(0)
    head = build_roi_head(roi_head_cfg(bbox_head_cfg(contrast_loss=None)))
    assert not head.bbox_head.with_contrast
    out = head.bbox_loss(features(), sampling_results(head, PROPOSALS, GTS))
    assert 'loss_contrast' not in out['loss_bbox']
    assert 'loss_cls' in out['loss_bbox']


def test_bad_configurations_raise():
    with pytest.raises(ValueError, match='ContrastiveBBoxHead'):
        build_roi_head(
            roi_head_cfg(
                dict(
                    type='Shared2FCBBoxHead',
                    in_channels=8,
                    fc_out_channels=32,
                    num_classes=NUM_CLASSES)))
    with pytest.raises(ValueError, match='contrast_weight'):
        build_roi_head(roi_head_cfg(bbox_head_cfg(contrast_weight=-1.0)))
    with pytest.raises(ValueError, match='proto_dims'):
        build_roi_head(
            roi_head_cfg(
                bbox_head_cfg(
                    contrast_loss='mmlt.BCLLoss', proto_dims=(32, 8))))
    head = proco_head()
    # Label values are not read on the host (no sync per step); the RoI head
    # passes object classes only, and a background label fails in indexing.
    with pytest.raises((IndexError, RuntimeError), match='out of bounds'):
        head.bbox_head.loss_contrast(
            torch.randn(2, 32), torch.tensor([0, NUM_CLASSES]))


def test_seesaw_classifier_with_bcl_branch():
    torch.manual_seed(0)
    head = build_roi_head(
        roi_head_cfg(
            bbox_head_cfg(
                contrast_loss='mmlt.BCLLoss',
                cls_predictor_cfg=dict(type='NormedLinear', tempearture=20),
                loss_cls=dict(type='SeesawLoss', num_classes=NUM_CLASSES))))
    # Seesaw adds two objectness rows after the object classes
    assert head.bbox_head.fc_cls.weight.shape[0] == NUM_CLASSES + 2
    branch = head.bbox_head.contrast_branch
    prototypes = branch.prototype_mlp(
        head.bbox_head.fc_cls.weight[:NUM_CLASSES])
    assert prototypes.shape == (NUM_CLASSES, 16)
    out = head.bbox_loss(features(), sampling_results(head, PROPOSALS, GTS))
    losses = out['loss_bbox']
    assert {'loss_cls_objectness', 'loss_cls_classes',
            'loss_contrast'} <= set(losses)
    losses['loss_contrast'].backward()
    grad = head.bbox_head.fc_cls.weight.grad
    assert grad[:NUM_CLASSES].abs().sum() > 0
    assert grad[NUM_CLASSES:].abs().sum() == 0


def _iou(a, b):
    """IoU of two (x1, y1, x2, y2) boxes, by hand."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1])
    return inter / (area - inter)


@pytest.mark.parametrize('iou_thr', [0.5, 0.9, 0.95])
def test_contrastive_positives_pass_the_iou_threshold(iou_thr):
    """Only foreground RoIs with IoU >= contrast_iou_thr with their GT box
    reach the contrastive loss (FSCE-style positives)."""
    torch.manual_seed(0)
    cfg = roi_head_cfg(bbox_head_cfg())
    cfg['contrast_iou_thr'] = iou_thr
    head = build_roi_head(cfg)
    head.bbox_head.contrast_branch.loss.set_class_counts(CLASS_COUNTS)
    seen = capture_contrast_inputs(head)
    results = sampling_results(head, PROPOSALS, GTS)
    head.bbox_loss(features(), results)
    expected = [
        int(label)
        for result in results
        for prior, gt, label in zip(result.pos_priors.tolist(),
                                    result.pos_gt_bboxes.tolist(),
                                    result.pos_gt_labels.tolist())
        if _iou(prior, gt) >= iou_thr - 1e-6
    ]
    taking_part = seen['weight'] > 0  # ProCo: weight 0 on the others
    assert seen['labels'][taking_part].tolist() == expected
    if iou_thr == 0.5:  # every foreground RoI, as before the option
        assert len(expected) == sum(len(r.pos_priors) for r in results)
    else:
        assert 0 < len(expected) < sum(len(r.pos_priors) for r in results)


def test_iou_weighting_weights_loss_and_statistics_by_hand():
    """contrast_iou_weight: each selected RoI weighs its IoU (by hand) in
    ProCo's loss (a weighted mean) and in the estimator's sums and counts."""
    torch.manual_seed(0)
    cfg = roi_head_cfg(bbox_head_cfg())
    cfg.update(contrast_iou_thr=0.5, contrast_iou_weight=True)
    head = build_roi_head(cfg)
    loss = head.bbox_head.contrast_branch.loss
    loss.set_class_counts(CLASS_COUNTS)
    seen = {}
    original = loss.forward

    def spy(features, labels, weight=None, avg_factor=None):
        seen.update(weight=weight.clone(), avg_factor=avg_factor.clone())
        return original(features, labels, weight=weight,
                        avg_factor=avg_factor)

    loss.forward = spy
    results = sampling_results(head, PROPOSALS, GTS)
    head.bbox_loss(features(), results)
    expected = [
        _iou(prior, gt) for result in results
        for prior, gt in zip(result.pos_priors.tolist(),
                             result.pos_gt_bboxes.tolist())
    ]
    # every RoI, in target order (per image: positives, then negatives at 0)
    expected_rows = [
        weight for result in results for weight in [
            _iou(prior, gt) for prior, gt in zip(
                result.pos_priors.tolist(), result.pos_gt_bboxes.tolist())
        ] + [0.0] * len(result.neg_priors)
    ]
    assert seen['weight'].tolist() == pytest.approx(expected_rows, rel=1e-5)
    assert seen['avg_factor'].item() == pytest.approx(sum(expected), 1e-5)
    # the statistics count each RoI by its IoU
    labels = [int(label) for r in results for label in r.pos_gt_labels]
    counts = torch.zeros(NUM_CLASSES, dtype=torch.float64)
    for label, weight in zip(labels, expected):
        counts[label] += weight
    torch.testing.assert_close(loss.estimator.current_counts, counts,
                               rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match='needs mmlt.ProCoLoss'):
        build_roi_head(
            dict(roi_head_cfg(bbox_head_cfg(contrast_loss='mmlt.SupConLoss')),
                 contrast_iou_weight=True))


@pytest.mark.parametrize('contrast_input', ['detached', 'separate'])
def test_contrast_input_ablations_keep_the_shared_fcs_out(contrast_input):
    """'detached' and 'separate': the contrastive gradient does not reach
    the shared fcs; 'separate' trains its own fc on the RoI features, by
    hand: relu(W x + b) of the flattened RoI features."""
    head = proco_head(contrast_input=contrast_input)
    results = sampling_results(head, PROPOSALS, GTS)
    x = tuple(level.requires_grad_(True) for level in features())
    seen = capture_contrast_inputs(head)
    out = head.bbox_loss(x, results)
    out['loss_bbox']['loss_contrast'].backward()
    bbox_head = head.bbox_head
    for fc in bbox_head.shared_fcs:
        assert fc.weight.grad is None
    reached_features = sum(level.grad.abs().sum() for level in x
                           if level.grad is not None)
    if contrast_input == 'detached':
        assert bbox_head.contrast_fc is None and reached_features == 0
        return
    assert bbox_head.contrast_fc.weight.grad.abs().sum() > 0
    assert reached_features > 0
    pos_rois = bbox2roi([res.pos_priors for res in results])
    roi_feats = head.bbox_roi_extractor(x[:4], pos_rois).flatten(1)
    weight, bias = bbox_head.contrast_fc.weight, bbox_head.contrast_fc.bias
    by_hand = torch.clamp(roi_feats @ weight.T + bias, min=0)
    projected = F.normalize(
        bbox_head.contrast_branch.projector(by_hand), dim=1)
    # ProCo takes every RoI, weight 0 on the background ones
    taking_part = seen['weight'] > 0
    torch.testing.assert_close(seen['features'][0][taking_part],
                               projected.detach())


def test_separate_fc_is_paired_and_inference_unchanged():
    """The separate fc is built on its own stream: the other weights equal
    those of the default head built after the same seed, and so do its
    predictions."""
    shared, separate = proco_head(), proco_head(contrast_input='separate')
    state = separate.state_dict()
    for key, value in shared.state_dict().items():
        assert torch.equal(value.nan_to_num(7.), state[key].nan_to_num(7.))
    # not the projector's stream: the same uniform draws would make the two
    # first rows proportional (kaiming_uniform scales them by fan-in)
    ratio = separate.bbox_head.contrast_fc.weight[0, :32] / \
        separate.bbox_head.contrast_branch.projector[0].weight[0, :32]
    assert ratio.std() > 0.1 * ratio.abs().mean()
    roi_feats = torch.randn(6, 8, 7, 7)
    for a, b in zip(shared.bbox_head(roi_feats), separate.bbox_head(roi_feats)):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match='contrast_input'):
        proco_head(contrast_input='frozen')
