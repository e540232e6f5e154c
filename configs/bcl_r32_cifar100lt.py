# BCL (Zhu et al., "Balanced Contrastive Learning for Long-Tailed Visual
# Recognition", CVPR 2022) on CIFAR-100-LT, imbalance factor 100: ResNet-32,
# logit-adjusted classifier on view 1; BCL loss (class-averaging +
# class-complement prototypes from the classifier weights through a
# 64-512-128 MLP), tau 0.1, lambda 2.0, on views 2 and 3. The schedule and
# augmentation are ProCo's CIFAR recipe (ProCo's CIFAR code is built on
# BCL's), so that the two methods differ only in the contrastive loss.
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
        contrast_loss=dict(type='mmlt.BCLLoss', temperature=0.1,
                           loss_weight=2.0)))
