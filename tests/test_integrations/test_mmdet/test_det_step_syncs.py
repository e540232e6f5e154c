"""The detection side of the training step reads no tensor value on the
host: DetLogitAdjustLoss and ContrastiveBBoxHead.loss_contrast (with each
contrastive loss), recorded at the aten level."""
import pytest
import torch

pytest.importorskip('mmdet')

from mmlt_det_helpers import (NUM_CLASSES, bbox_head_cfg,  # noqa: E402
                              build_roi_head, roi_head_cfg)
from op_recorder import OpRecorder  # noqa: E402

@pytest.mark.parametrize(
    'contrast', ['mmlt.ProCoLoss', 'mmlt.BCLLoss', 'mmlt.SupConLoss',
                 'proco-estimator-prior'])
def test_loss_contrast_has_no_host_sync(contrast):
    torch.manual_seed(0)
    cfg = bbox_head_cfg(contrast_loss=contrast.replace(
        'proco-estimator-prior', 'mmlt.ProCoLoss'))
    if contrast == 'proco-estimator-prior':
        cfg['contrast_loss']['prior'] = 'estimator'
    head = build_roi_head(roi_head_cfg(cfg))
    for module in head.modules():
        if hasattr(module, 'set_class_counts'):
            module.set_class_counts([50, 30, 10, 5, 2][:NUM_CLASSES])
    shared = torch.randn(7, 32, requires_grad=True)
    labels = torch.tensor([0, 1, 1, 2, 0, 3, 4])[:7] % NUM_CLASSES
    recorder = OpRecorder()
    with recorder:
        loss = head.bbox_head.loss_contrast(shared, labels)['loss_contrast']
        loss.backward()
    assert torch.isfinite(loss)
    assert not recorder.host_syncs, recorder.host_syncs


@pytest.mark.parametrize('prior', ['counts', 'online'])
def test_det_logit_adjust_loss_has_no_host_sync(prior):
    from mmlt.integrations.mmdet import DetLogitAdjustLoss
    loss_module = DetLogitAdjustLoss(
        class_counts=[50, 30, 10, 5, 2], prior=prior, num_classes=5)
    scores = torch.randn(9, 6, requires_grad=True)  # 5 classes + background
    labels = torch.tensor([0, 5, 5, 1, 2, 5, 3, 4, 5])
    recorder = OpRecorder()
    with recorder:
        loss = loss_module(scores, labels)
        loss.backward()
    assert torch.isfinite(loss)
    assert not recorder.host_syncs, recorder.host_syncs
