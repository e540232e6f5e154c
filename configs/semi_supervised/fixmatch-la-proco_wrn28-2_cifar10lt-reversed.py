# fixmatch-la-proco_wrn28-2_cifar10lt-consistent.py with the reversed unlabeled split
# (M1 = 3000, largest for the labeled tail class).
#
#   python tools/train.py configs/semi_supervised/fixmatch-la-proco_wrn28-2_cifar10lt-reversed.py
_base_ = './fixmatch-la-proco_wrn28-2_cifar10lt-consistent.py'

train_dataloader = dict(
    dataset=dict(unlabeled=dict(unlabeled=dict(profile='reversed'))))
