# FixMatch + logit adjustment with ACR's adaptive adjustment for an unknown
# unlabeled distribution (Wei and Gan, CVPR 2023; docs/semi_supervised.md):
# once per epoch the estimated pi_u (the mean pseudo-label distribution) is
# compared with the consistent, uniform and reversed anchors (symmetric KL)
# and tau in [0, 2] sets the adjustment of the pseudo-labels and of the
# unlabeled loss. ACR's own estimate, the balanced classifier's confident
# predictions, is source='balanced_histogram' (much worse on the reversed
# Fashion-MNIST-LT split, no better on the others: docs/semi_supervised.md).
# Uniform unlabeled split.
#
#   python tools/train.py configs/semi_supervised/fixmatch-la-acr_fashionmnistlt-uniform.py
_base_ = './fixmatch-la_fashionmnistlt-uniform.py'

model = dict(
    head=dict(
        unlabeled_prior=dict(mode='adaptive', source='mean_prediction',
                             momentum=0.99, tau_max=2.0)))
