# fixmatch_fashionmnistlt-consistent.py with the uniform: 2000 unlabeled images of every class (20,000).
#
#   python tools/train.py configs/semi_supervised/fixmatch_fashionmnistlt-uniform.py
_base_ = './fixmatch_fashionmnistlt-consistent.py'

train_dataloader = dict(
    dataset=dict(unlabeled=dict(unlabeled=dict(profile='uniform'))))
