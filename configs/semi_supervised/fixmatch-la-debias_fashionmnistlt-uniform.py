# FixMatch + logit adjustment with distribution-aware pseudo-labels
# (DebiasPL-style, docs/semi_supervised.md): the unlabeled data's class
# distribution pi_u is estimated online (EMA of the mean pseudo-label
# distribution, an EM step per batch) and its log is added to the logits of
# the pseudo-labels and of the unlabeled loss. Uniform unlabeled split.
#
#   python tools/train.py configs/semi_supervised/fixmatch-la-debias_fashionmnistlt-uniform.py
_base_ = './fixmatch-la_fashionmnistlt-uniform.py'

model = dict(
    head=dict(unlabeled_prior=dict(mode='estimated', source='mean_prediction',
                                   momentum=0.99)))
