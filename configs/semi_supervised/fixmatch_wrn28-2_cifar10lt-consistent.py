# FixMatch on long-tailed semi-supervised CIFAR-10-LT (N1 1500, M1 3000, IF 100), consistent
# unlabeled split; GPU settings in _base_/cifar_ssl.py.
#
#   python tools/train.py configs/semi_supervised/fixmatch_wrn28-2_cifar10lt-consistent.py
_base_ = './_base_/cifar10lt_ssl.py'
