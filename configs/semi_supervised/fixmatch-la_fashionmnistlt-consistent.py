# FixMatch + logit adjustment: the labeled loss is logit-adjusted
# cross-entropy (Menon et al., ICLR 2021; tau 1, the labeled split's prior),
# so the classifier's raw logits, which make the pseudo-labels, are the
# balanced ones. Consistent unlabeled split.
#
#   python tools/train.py configs/semi_supervised/fixmatch-la_fashionmnistlt-consistent.py
_base_ = './_base_/fashionmnistlt_ssl.py'

model = dict(head=dict(loss=dict(type='mmlt.LogitAdjustLoss', tau=1.0)))
