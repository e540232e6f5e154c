# FixMatch + logit adjustment + ProCo with confident pseudo-labels (tau 0.1,
# weight 1, projection 512-128) on CIFAR-100-LT (N1 150, M1 300, IF 10), consistent unlabeled split.
#
#   python tools/train.py configs/semi_supervised/fixmatch-la-proco_wrn28-2_cifar100lt-consistent.py
_base_ = './fixmatch-la_wrn28-2_cifar100lt-consistent.py'

model = dict(
    head=dict(
        contrast_loss=dict(
            type='mmlt.ProCoLoss', temperature=0.1, loss_weight=1.0,
            # the prior of the samples ProCo sees: the estimator's weighted
            # counts (labeled + kept pseudo-labels), not the labeled split's
            prior='estimator')))
