# FixMatch + logit adjustment (tau 1, the labeled prior) on CIFAR-10-LT (N1 1500, M1 3000, IF 100), consistent unlabeled split.
#
#   python tools/train.py configs/semi_supervised/fixmatch-la_wrn28-2_cifar10lt-consistent.py
_base_ = './_base_/cifar10lt_ssl.py'

model = dict(head=dict(loss=dict(type='mmlt.LogitAdjustLoss', tau=1.0)))
