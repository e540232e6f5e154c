# Cross-entropy baseline on ImageNet-LT: ResNet-50 and cosine classifier
# (scale 30) trained on the classifier view of ProCo/BCL (RandAugment) with
# plain CE (LogitAdjustLoss with tau 0), no contrastive branch; the
# ImageNet-LT schedule of ProCo (batch 256, lr 0.1, wd 5e-4, cosine, 90
# epochs).
_base_ = [
    '_base_/models/contrastive_r50.py',
    '_base_/datasets/imagenetlt_single_view.py',
    '_base_/schedules/imagenet_lt_sgd_cos_90e.py',
    '_base_/gpu_runtime.py',
]

model = dict(
    head=dict(
        num_classes=1000,
        loss=dict(type='mmlt.LogitAdjustLoss', tau=0.0),
        contrast_loss=None))
