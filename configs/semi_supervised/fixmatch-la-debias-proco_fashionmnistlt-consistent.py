# fixmatch-la-debias_fashionmnistlt-consistent.py + ProCo (Du et al., TPAMI 2024), as in
# fixmatch-la-proco_fashionmnistlt-consistent.py: ProCo's logit adjustment uses the
# estimator's weighted counts (labeled + kept pseudo-labels, prior='estimator').
#
#   python tools/train.py configs/semi_supervised/fixmatch-la-debias-proco_fashionmnistlt-consistent.py
_base_ = './fixmatch-la-debias_fashionmnistlt-consistent.py'

model = dict(
    head=dict(
        contrast_loss=dict(
            type='mmlt.ProCoLoss', temperature=0.1, loss_weight=1.0,
            prior='estimator')))
