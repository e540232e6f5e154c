# ProCo (Du et al., "Probabilistic Contrastive Learning for Long-Tailed Visual
# Recognition", TPAMI 2024) on CIFAR-100-LT, imbalance factor 100.
# ResNet-32, linear classifier trained with the logit-adjusted loss on the
# AutoAugment+Cutout view; projection 64-512-128 and the ProCo loss
# (tau 0.1, alpha 1) on two SimCLR-style views. Batch 256 on one GPU, SGD
# lr 0.3, wd 2e-4, 200 epochs (warm-up 5, x0.1 at 160 and 180).
# Paper: 52.8 top-1 (IF 100), 57.1 (IF 50), 65.5 (IF 10).
_base_ = [
    '_base_/models/contrastive_r32_cifar.py',
    '_base_/datasets/cifar100lt.py',
    '_base_/schedules/cifar_lt_sgd_200e.py',
    '_base_/gpu_runtime.py',
]

model = dict(
    head=dict(
        num_classes=100,
        loss=dict(type='mmlt.LogitAdjustLoss', tau=1.0),
        contrast_loss=dict(type='mmlt.ProCoLoss', temperature=0.1,
                           loss_weight=1.0)))
