# MMDetection's Mask R-CNN R50-FPN LVIS v1 recipe, evaluated with LVIS AP,
# AP-fixed and AP-pool (Dave et al., 2021; docs/detection.md). Training is
# unchanged; at test time the RoI head keeps, after NMS, the best 300
# detections of every class in each image (no cap of 300 per image shared by
# the classes), and mmlt.LVISFixedMetric reports
#   * the standard LVIS AP/APr/APc/APf: 300 detections per image, applied by
#     the metric (with max_per_class >= 300 these are exactly the detections
#     the usual max_per_img=300 gives, so the numbers are LVISMetric's),
#   * AP-fixed: the best 10,000 detections of each class over val, no
#     per-image cap (the LVIS challenge's metric), with APr/APc/APf,
#   * AP-pool: one ranking of all classes' detections.
# Memory of the metric on LVIS v1 val (19,809 images, 1203 classes): at most
# 12.0M detections per IoU type (0.43 GB of boxes, 4.1 GB of boxes and mask
# RLEs, 1.25x that while streaming, about 7.5 GB in all at the peak of a
# pruning: docs/detection.md), plus the standard path's 300 per image
# (MMDetection's LVISMetric holds those too). The mask head runs on every
# kept detection: set max_per_img (e.g. 3000) to bound its memory per image.
# Standard AP only (as MMDetection's LVISMetric, cheaper):
#   --cfg-options model.test_cfg.rcnn.max_per_class=None \
#       model.test_cfg.rcnn.max_per_img=300 \
#       val_evaluator.ap_types=standard test_evaluator.ap_types=standard
_base_ = 'mmdet::lvis/mask-rcnn_r50_fpn_sample1e-3_ms-1x_lvis-v1.py'

# The same sampler and repeat-factor sampling, resumable inside an epoch and
# with per-sample seeds (mmlt.ExactResumeHook, docs/resume.md).
train_dataloader = dict(
    pin_memory=True,
    sampler=dict(type='mmlt.ResumableSampler'),
    dataset=dict(type='mmlt.ClassBalancedDataset'))

model = dict(
    roi_head=dict(type='mmlt.PerClassTopKRoIHead'),
    test_cfg=dict(
        rcnn=dict(score_thr=0.0001, max_per_img=-1, max_per_class=300)))

val_evaluator = dict(
    type='mmlt.LVISFixedMetric',
    metric=['bbox', 'segm'],
    ap_types=('standard', 'fixed', 'pool'),
    max_dets_per_img=300,
    dets_per_class=10000)
test_evaluator = val_evaluator
# lvis_per_class_ap.{csv,png} go to the work dir.
default_hooks = dict(
    metric_out_dir=dict(type='mmlt.MetricOutDirHook'),
    gather_bound=dict(type='mmlt.GatherBoundHook'))
