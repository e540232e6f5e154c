# Logit-adjustment baseline (Menon et al., ICLR 2021; = Balanced Softmax) on
# CIFAR-100-LT (IF 100): ce_r32_cifar100lt.py with the logit-adjusted loss
# (tau 1), i.e. ProCo/BCL without their contrastive branch.
_base_ = [
    '_base_/models/contrastive_r32_cifar.py',
    '_base_/datasets/cifar100lt_single_view.py',
    '_base_/schedules/cifar_lt_sgd_200e.py',
    '_base_/gpu_runtime.py',
]

model = dict(
    head=dict(
        num_classes=100,
        loss=dict(type='mmlt.LogitAdjustLoss', tau=1.0),
        contrast_loss=None))
