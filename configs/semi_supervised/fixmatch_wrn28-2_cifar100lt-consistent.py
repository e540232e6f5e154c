# FixMatch on long-tailed semi-supervised CIFAR-100-LT (N1 150, M1 300, IF 10), consistent
# unlabeled split; GPU settings in _base_/cifar_ssl.py.
#
#   python tools/train.py configs/semi_supervised/fixmatch_wrn28-2_cifar100lt-consistent.py
_base_ = './_base_/cifar100lt_ssl.py'
