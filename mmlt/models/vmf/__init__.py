"""The von Mises-Fisher (vMF) distribution: Bessel functions
(:mod:`.bessel`), the vMF maths (:mod:`.vmf`: normaliser, mean resultant
length, concentration estimate, ProCo's expected contrast logits) and the
online per-class estimator (:mod:`.vmf_estimator`, registered as
``mmlt.VMFEstimator``)."""
from .bessel import log_bessel_iv
from .vmf import (bessel_ratio, estimate_kappa, expected_contrast_logits,
                  log_vmf_normalizer)
from .vmf_estimator import VMFEstimator

__all__ = [
    'VMFEstimator',
    'bessel_ratio',
    'estimate_kappa',
    'expected_contrast_logits',
    'log_bessel_iv',
    'log_vmf_normalizer',
]
