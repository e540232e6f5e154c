# Logit-adjustment baseline (Menon et al., ICLR 2021; = Balanced Softmax) on
# ImageNet-LT: ce_r50_imagenetlt.py with the logit-adjusted loss (tau 1),
# i.e. ProCo/BCL without their contrastive branch.
_base_ = [
    '_base_/models/contrastive_r50.py',
    '_base_/datasets/imagenetlt_single_view.py',
    '_base_/schedules/imagenet_lt_sgd_cos_90e.py',
    '_base_/gpu_runtime.py',
]

model = dict(
    head=dict(
        num_classes=1000,
        loss=dict(type='mmlt.LogitAdjustLoss', tau=1.0),
        contrast_loss=None))
