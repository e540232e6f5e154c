# Cross-entropy baseline on CIFAR-100-LT (IF 100): ResNet-32 and linear
# classifier trained on the classifier view of ProCo/BCL (AutoAugment +
# Cutout) with plain CE (LogitAdjustLoss with tau 0), no contrastive branch;
# ProCo's CIFAR schedule (batch 256, lr 0.3, wd 2e-4, 200 epochs).
_base_ = [
    '_base_/models/contrastive_r32_cifar.py',
    '_base_/datasets/cifar100lt_single_view.py',
    '_base_/schedules/cifar_lt_sgd_200e.py',
    '_base_/gpu_runtime.py',
]

model = dict(
    head=dict(
        num_classes=100,
        loss=dict(type='mmlt.LogitAdjustLoss', tau=0.0),
        contrast_loss=None))
