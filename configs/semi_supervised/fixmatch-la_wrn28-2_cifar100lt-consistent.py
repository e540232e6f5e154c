# FixMatch + logit adjustment (tau 1, the labeled prior) on CIFAR-100-LT (N1 150, M1 300, IF 10), consistent unlabeled split.
#
#   python tools/train.py configs/semi_supervised/fixmatch-la_wrn28-2_cifar100lt-consistent.py
_base_ = './_base_/cifar100lt_ssl.py'

model = dict(head=dict(loss=dict(type='mmlt.LogitAdjustLoss', tau=1.0)))
