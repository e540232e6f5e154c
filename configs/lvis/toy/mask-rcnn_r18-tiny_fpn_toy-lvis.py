# A small Mask R-CNN on the toy LVIS v1 set that
# tools/dataset_converters/make_toy_lvis.py builds from Fashion-MNIST, for the
# CPU: ResNet-18 layout with 16 base channels, trained from scratch on
# 128x128 images. Plain cross-entropy RoI classifier (the baseline); the
# variants next to this file add logit adjustment and the contrastive branch.
#
#   python tools/dataset_converters/make_toy_lvis.py data/toy_lvis
#   python tools/train.py configs/lvis/toy/mask-rcnn_r18-tiny_fpn_toy-lvis.py
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    'mmdet::_base_/default_runtime.py',
]

num_classes = 10
data_root = 'data/toy_lvis/'
classes = ('t-shirt', 'trouser', 'pullover', 'dress', 'coat', 'sandal',
           'shirt', 'sneaker', 'bag', 'ankle_boot')

model = dict(
    backbone=dict(
        depth=18,
        base_channels=16,
        frozen_stages=-1,
        norm_eval=False,
        init_cfg=None),
    neck=dict(in_channels=[16, 32, 64, 128], out_channels=64),
    rpn_head=dict(in_channels=64, feat_channels=64),
    roi_head=dict(
        # StandardRoIHead plus AP-fixed's test options (test_cfg.rcnn)
        type='mmlt.PerClassTopKRoIHead',
        bbox_roi_extractor=dict(out_channels=64),
        bbox_head=dict(
            in_channels=64, fc_out_channels=256, num_classes=num_classes),
        mask_roi_extractor=dict(out_channels=64),
        mask_head=dict(
            num_convs=2,
            in_channels=64,
            conv_out_channels=64,
            num_classes=num_classes)),
    train_cfg=dict(
        rpn_proposal=dict(nms_pre=500, max_per_img=200),
        rcnn=dict(sampler=dict(num=128))),
    test_cfg=dict(
        rpn=dict(nms_pre=300, max_per_img=100),
        # AP-fixed as Dave et al. produce it: no per-image cap, floor 1e-7,
        # per-class thresholds from the 10,000-th best score of the pass so
        # far, masks in chunks; plus each image's best 50 above 1e-4, from
        # which the evaluator takes the standard AP's detections.
        rcnn=dict(score_thr=1e-7, max_per_img=-1, dets_per_class=10000,
                  standard_max_per_img=50, standard_score_thr=0.0001,
                  mask_chunk=1000)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=(128, 128), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(128, 128), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor'))
]

train_dataloader = dict(
    batch_size=8,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='mmlt.ResumableSampler', shuffle=True),
    batch_sampler=dict(type='AspectRatioBatchSampler'),
    dataset=dict(
        # Repeat-factor sampling of LVIS (Gupta et al., 2019). LVIS uses a
        # threshold of 1e-3 of its 100k images; the toy set has 370, so the
        # same rule needs a larger threshold to repeat its rare images
        # (3 of 370 images -> about 3.5 repeats).
        type='mmlt.ClassBalancedDataset',
        oversample_thr=0.1,
        dataset=dict(
            type='mmlt.LVISV1WithClassCounts',
            class_counts_mode='instance',
            metainfo=dict(classes=classes),
            data_root=data_root,
            ann_file='annotations/lvis_v1_train.json',
            data_prefix=dict(img=''),
            filter_cfg=dict(filter_empty_gt=True, min_size=32),
            pipeline=train_pipeline)))
val_dataloader = dict(
    batch_size=4,
    num_workers=0,
    persistent_workers=False,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='LVISV1Dataset',
        metainfo=dict(classes=classes),
        data_root=data_root,
        ann_file='annotations/lvis_v1_val.json',
        data_prefix=dict(img=''),
        test_mode=True,
        pipeline=test_pipeline))
test_dataloader = val_dataloader

# LVIS AP (at most 50 detections per image on this 10-class set, as the
# model's cap was before; LVIS uses 300), AP-fixed (no per-image cap, the
# best 10,000 detections per class, which no class reaches on 40 images)
# and AP-pool, for boxes and masks; lvis_per_class_ap.{csv,png} in the work
# dir (docs/detection.md).
val_evaluator = dict(
    type='mmlt.LVISFixedMetric',
    ann_file=data_root + 'annotations/lvis_v1_val.json',
    metric=['bbox', 'segm'],
    max_dets_per_img=50,
    standard_score_thr=0.0001,
    dets_per_class=10000)
test_evaluator = val_evaluator

train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=12, val_interval=12)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = [
    dict(
        type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(
        type='MultiStepLR',
        begin=0,
        end=12,
        by_epoch=True,
        milestones=[9, 11],
        gamma=0.1)
]
optim_wrapper = dict(
    type='mmlt.SkipNonFiniteOptimWrapper',
    optimizer=dict(type='SGD', lr=0.02, momentum=0.9, weight_decay=0.0001),
    clip_grad=dict(max_norm=35, norm_type=2))

default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10),
    checkpoint=dict(type='CheckpointHook', interval=12),
    visualization=dict(type='DetVisualizationHook'),
    metric_out_dir=dict(type='mmlt.MetricOutDirHook'),
    gather_bound=dict(type='mmlt.GatherBoundHook'),
    # periodic validations (val_interval < 12): standard AP only
    standard_ap_until_last=dict(type='mmlt.StandardAPUntilLastHook'))
log_processor = dict(type='LogProcessor', window_size=10, by_epoch=True)
env_cfg = dict(dist_cfg=dict(backend='gloo'))
custom_hooks = [
    dict(type='mmlt.ExactResumeHook'),
    dict(type='mmlt.CheckpointCheckHook')
]
