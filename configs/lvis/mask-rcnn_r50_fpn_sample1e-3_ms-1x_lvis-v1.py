# Baseline: MMDetection's Mask R-CNN R50-FPN on LVIS v1, repeat-factor
# sampling at 1e-3 (ClassBalancedDataset oversample_thr=1e-3), multi-scale
# training, 12 epochs, cross-entropy RoI classifier. Trained unchanged, so
# that the variants in this folder compare against MMDetection's own recipe;
# evaluated with LVIS AP, AP-fixed and AP-pool (_base_/ and
# docs/detection.md).
#
# Data: data/lvis_v1/{train2017,val2017,annotations/lvis_v1_{train,val}.json}
# (docs/detection.md). 8 GPUs x 2 images:
#   bash tools/dist_train.sh configs/lvis/mask-rcnn_r50_fpn_sample1e-3_ms-1x_lvis-v1.py 8
_base_ = './_base_/mask-rcnn_r50_fpn_ap-fixed_lvis-v1.py'

# The one addition: --resume continues bit for bit (docs/resume.md).
custom_hooks = [
    dict(type='mmlt.ExactResumeHook'),
    dict(type='mmlt.CheckpointCheckHook')
]
# Validate once, after the last of the 12 epochs.
train_cfg = dict(val_interval=12)
