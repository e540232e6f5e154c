# ProCo (Du et al., TPAMI 2024) on CIFAR-10-LT, imbalance factor 100: the
# recipe of proco_r32_cifar100lt.py (ResNet-32, projection 64-512-128,
# tau 0.1, alpha 1, batch 256, lr 0.3, wd 2e-4, 200 epochs).
# Paper: 85.9 top-1 (IF 100), 88.2 (IF 50), 91.9 (IF 10).
_base_ = [
    '_base_/models/contrastive_r32_cifar.py',
    '_base_/datasets/cifar10lt.py',
    '_base_/schedules/cifar_lt_sgd_200e.py',
    '_base_/gpu_runtime.py',
]

model = dict(
    head=dict(
        num_classes=10,
        loss=dict(type='mmlt.LogitAdjustLoss', tau=1.0),
        contrast_loss=dict(type='mmlt.ProCoLoss', temperature=0.1,
                           loss_weight=1.0)))
