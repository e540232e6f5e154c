# BCL (Zhu et al., CVPR 2022) on ImageNet-LT: ResNet-50 from scratch, cosine
# classifier (scale 30) with the logit-adjusted loss on the RandAugment view;
# BCL loss (class prototypes from the classifier weights through a
# 2048-2048-1024 MLP), tau 0.07, lambda 0.35, on two SimCLR-style views
# ("sim-sim"). Batch 256, SGD lr 0.1, wd 5e-4, cosine, 90 epochs.
_base_ = [
    '_base_/models/contrastive_r50.py',
    '_base_/datasets/imagenetlt.py',
    '_base_/schedules/imagenet_lt_sgd_cos_90e.py',
    '_base_/gpu_runtime.py',
]

model = dict(
    head=dict(
        num_classes=1000,
        loss=dict(type='mmlt.LogitAdjustLoss', tau=1.0),
        contrast_loss=dict(type='mmlt.BCLLoss', temperature=0.07,
                           loss_weight=0.35)))
