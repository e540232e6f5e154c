# FixMatch + logit adjustment + ProCo (Du et al., TPAMI 2024) with
# pseudo-labels: both views of every labeled image and of every confidently
# pseudo-labeled unlabeled image feed the ProCo loss (tau 0.1, weight 1, as
# in the supervised demo) and its per-class vMF estimates; unconfident
# unlabeled images are left out of both. Consistent unlabeled split.
#
#   python tools/train.py configs/semi_supervised/fixmatch-la-proco_fashionmnistlt-consistent.py
_base_ = './fixmatch-la_fashionmnistlt-consistent.py'

model = dict(
    head=dict(
        contrast_loss=dict(
            type='mmlt.ProCoLoss', temperature=0.1, loss_weight=1.0,
            # the prior of the samples ProCo sees: the estimator's weighted
            # counts (labeled + kept pseudo-labels), not the labeled split's
            prior='estimator')))
