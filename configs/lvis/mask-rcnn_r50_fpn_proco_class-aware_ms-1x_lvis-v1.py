# The ProCo config with class-aware sampling (Shen et al., ECCV 2016) instead
# of repeat-factor sampling: every iteration draws a category uniformly, then
# an image containing it (MMDetection's ClassAwareSampler, multi-label aware),
# with epochs as long as the repeat-factor epochs of the 1e-3 configs
# (mmlt.RFSMatchedClassAwareSampler), so that both take the same iterations.
# The losses' class prior is the sampled stream's (ClassCountsHook's
# prior='stream'): near-uniform here, so the sampler balances once, not twice.
_base_ = './mask-rcnn_r50_fpn_proco_sample1e-3_ms-1x_lvis-v1.py'

train_dataloader = dict(
    sampler=dict(
        _delete_=True,
        type='mmlt.RFSMatchedClassAwareSampler',
        num_sample_class=1,
        oversample_thr=1e-3),
    dataset=dict(
        _delete_=True,
        type='mmlt.LVISV1WithClassCounts',
        class_counts_mode='instance',
        data_root='data/lvis_v1/',
        ann_file='annotations/lvis_v1_train.json',
        data_prefix=dict(img=''),
        filter_cfg=dict(filter_empty_gt=True, min_size=32),
        pipeline={{_base_.train_pipeline}}))
