# ProCo (Du et al., TPAMI 2024) on ImageNet-LT: ResNet-50 from scratch, cosine
# classifier (scale 30) trained with the logit-adjusted loss on the
# RandAugment view; projection 2048-2048-1024 and the ProCo loss (tau 0.07,
# alpha 1) on two SimCLR-style views. 8 GPUs x 32 images, SGD lr 0.1,
# wd 5e-4, cosine, 90 epochs. Paper: 57.3 top-1.
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
        contrast_loss=dict(type='mmlt.ProCoLoss', temperature=0.07,
                           loss_weight=1.0)))
