# Shared by the mmlt LVIS v1 configs: the training set carries its class
# counts (instances per category of lvis_v1_train.json); mmlt.ClassCountsHook
# hands every loss with set_class_counts (logit adjustment; ProCo, whose LVIS
# configs take their prior from the estimator's RoI counts instead) the
# counts of the stream the classifier is trained on (prior='stream': each image
# weighted by its repeats under repeat-factor sampling, by its expected draws
# under class-aware sampling), and mmlt.VMFWindowHook starts a new vMF window
# every 2000 iterations (ProCo's estimator pools the previous and the current
# window: 2000-4000 iterations of 16 images, a quarter to a half of one
# repeat-factor-sampled epoch; an epoch window would keep a random-init
# head's features for a sixth of the 1x schedule; docs/detection.md).
# No custom_imports: MMDetection resolves every `mmlt.X` type through
# mmlt.registry, which imports mmlt.integrations.mmdet on first use.
_base_ = './mask-rcnn_r50_fpn_ap-fixed_lvis-v1.py'

train_dataloader = dict(
    dataset=dict(
        dataset=dict(
            type='mmlt.LVISV1WithClassCounts',
            class_counts_mode='instance')))

custom_hooks = [
    dict(type='mmlt.ClassCountsHook', prior='stream'),
    dict(type='mmlt.VMFWindowHook', window_iters=2000),
    dict(type='mmlt.ExactResumeHook'),
    dict(type='mmlt.CheckpointCheckHook'),
]

# Skip steps with NaN/Inf gradients (stop after 10 in a row); --amp makes it
# mmlt.AmpOptimWrapper.
optim_wrapper = dict(type='mmlt.SkipNonFiniteOptimWrapper')

# Validate once, after the last of the 12 epochs (a full LVIS val pass is
# long; MMDetection's schedule_1x validates after every epoch).
train_cfg = dict(val_interval=12)
