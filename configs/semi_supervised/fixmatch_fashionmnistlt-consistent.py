# FixMatch (Sohn et al., NeurIPS 2020) on long-tailed semi-supervised
# Fashion-MNIST-LT: cross-entropy on the labeled weak views, cross-entropy of
# the strong views against the weak views' confident (>= 0.95) predictions.
# Consistent unlabeled split (docs/semi_supervised.md).
#
#   python tools/train.py configs/semi_supervised/fixmatch_fashionmnistlt-consistent.py
_base_ = './_base_/fashionmnistlt_ssl.py'
