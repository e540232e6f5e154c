# FixMatch's learning rate (Sohn et al., NeurIPS 2020), also ACR's (Wei and
# Gan, CVPR 2023): lr(k) = lr0 cos(7 pi k / (16 K)) at iteration k of K,
# ending at cos(7 pi / 16) = 0.195 lr0. Epoch-based, stepped every iteration;
# `end` defaults to the last epoch. The CIFAR configs use it
# (`param_scheduler = _base_.fixmatch_cosine` in _base_/cifar_ssl.py).
fixmatch_cosine = [
    dict(
        type='mmlt.FixMatchCosineLR',
        fraction=7 / 16,
        by_epoch=True,
        convert_to_iter_based=True)
]
