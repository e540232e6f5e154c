# fixmatch-la_fashionmnistlt-consistent.py with the reversed: the labeled tail class has the most unlabeled images (2000 ... 20).
#
#   python tools/train.py configs/semi_supervised/fixmatch-la_fashionmnistlt-reversed.py
_base_ = './fixmatch-la_fashionmnistlt-consistent.py'

train_dataloader = dict(
    dataset=dict(unlabeled=dict(unlabeled=dict(profile='reversed'))))
