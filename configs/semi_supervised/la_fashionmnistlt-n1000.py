# Supervised-only baseline of the semi-supervised Fashion-MNIST-LT configs:
# logit adjustment (tau 1) on the labeled split alone (n_max 1000, IF 100),
# i.e. configs/la_fashionmnistlt.py (same backbone, optimiser, 20 epochs of
# 64 labeled images per iteration, 39 iterations against the semi-supervised
# runs' 38), with the EMA model evaluated as in the semi-supervised runs
# (momentum 0.01); no unlabeled data. The "LA, labeled data only" row of
# docs/semi_supervised.md's three-seed tables.
#
#   python tools/train.py configs/semi_supervised/la_fashionmnistlt-n1000.py
_base_ = ['../la_fashionmnistlt.py']

custom_hooks = _base_.custom_hooks + [
    # as in _base_/fashionmnistlt_ssl.py
    dict(type='EMAHook', momentum=0.01, priority='ABOVE_NORMAL'),
]
