from .dist_utils import (all_gather_with_grad, gather_batch_sizes,
                         gather_no_grad, is_distributed)
from .vmf import (bessel_ratio, estimate_kappa, expected_contrast_logits,
                  log_bessel_iv, log_vmf_normalizer)
from .vmf_estimator import VMFEstimator
from .kmeans import KMeansResult, estimate_concentration, kmeans

__all__ = [
    'all_gather_with_grad',
    'gather_batch_sizes',
    'gather_no_grad',
    'is_distributed',
    'VMFEstimator',
    'bessel_ratio',
    'estimate_kappa',
    'expected_contrast_logits',
    'log_bessel_iv',
    'log_vmf_normalizer',
    'KMeansResult',
    'estimate_concentration',
    'kmeans',
]
