# fixmatch-la_wrn28-2_cifar10lt-consistent.py with the uniform unlabeled split
# (M1 = 3000 for every class).
#
#   python tools/train.py configs/semi_supervised/fixmatch-la_wrn28-2_cifar10lt-uniform.py
_base_ = './fixmatch-la_wrn28-2_cifar10lt-consistent.py'

train_dataloader = dict(
    dataset=dict(unlabeled=dict(unlabeled=dict(profile='uniform'))))
