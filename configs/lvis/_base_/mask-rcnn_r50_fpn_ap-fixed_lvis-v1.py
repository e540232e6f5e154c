# MMDetection's Mask R-CNN R50-FPN LVIS v1 recipe, evaluated with LVIS AP,
# AP-fixed and AP-pool (Dave et al., 2021; docs/detection.md). Training is
# unchanged; at test time the RoI head produces detections as Dave et al.'s
# inference does (no per-image cap, a score floor of 1e-7, per-class
# thresholds: a detection below its class's 10,000-th best score so far in
# the pass is dropped before the mask head, which runs on 1000 detections at
# a time and returns RLEs), and keeps each image's best 300 above 1e-4 too,
# so mmlt.LVISFixedMetric reports
#   * the standard LVIS AP/APr/APc/APf: score > 1e-4, then 300 detections
#     per image, applied by the metric (MMDetection's test setting, so the
#     numbers are LVISMetric's),
#   * AP-fixed: the best 10,000 detections of each class over val, no
#     per-image cap (the LVIS challenge's metric), with APr/APc/APf, and a
#     warning naming the classes with fewer than 10,000 detections,
#   * AP-pool: one ranking of all classes' detections.
# Memory of the metric on LVIS v1 val (19,809 images, 1203 classes): at most
# 12.0M detections per IoU type (0.43 GB of boxes, 4.1 GB of boxes and mask
# RLEs, 1.25x that while streaming, about 7.5 GB in all at the peak of a
# pruning: docs/detection.md), plus the standard path's 300 per image
# (MMDetection's LVISMetric holds those too).
# Standard AP only (as MMDetection's LVISMetric, cheaper):
#   --cfg-options model.test_cfg.rcnn.dets_per_class=None \
#       model.test_cfg.rcnn.score_thr=0.0001 \
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
        rcnn=dict(
            score_thr=1e-7,
            max_per_img=-1,
            dets_per_class=10000,
            standard_max_per_img=300,
            standard_score_thr=0.0001,
            mask_chunk=1000)))

val_evaluator = dict(
    type='mmlt.LVISFixedMetric',
    metric=['bbox', 'segm'],
    ap_types=('standard', 'fixed', 'pool'),
    max_dets_per_img=300,
    standard_score_thr=0.0001,
    dets_per_class=10000)
test_evaluator = val_evaluator
# lvis_per_class_ap.{csv,png} go to the work dir; validations before the
# last one (with a smaller train_cfg.val_interval) compute the standard AP
# only, on MMDetection's detections (AP-fixed's pass is much dearer).
default_hooks = dict(
    metric_out_dir=dict(type='mmlt.MetricOutDirHook'),
    gather_bound=dict(type='mmlt.GatherBoundHook'),
    standard_ap_until_last=dict(type='mmlt.StandardAPUntilLastHook'))

# Distributed timeout (seconds; MMEngine passes it to init_process_group).
# After a validation pass the main process unpickles the gathered results
# and evaluates the standard AP (300 per image) and AP-fixed/AP-pool (12.0M
# detections per IoU type) while the other processes wait in the result
# broadcast; NCCL's default (10 minutes) kills them first. Measured on a
# synthetic LVIS v1 val output at 1/64-1/16 scale and extrapolated linearly
# to full scale (docs/detection.md, benchmarks/bench_lvis_validation.py):
# about 40 minutes on one core of a shared 2-core CPU (standard AP ~25 min,
# AP-fixed/pool ~10 min). 2 hours is 3x that.
env_cfg = dict(dist_cfg=dict(timeout=2 * 3600))
