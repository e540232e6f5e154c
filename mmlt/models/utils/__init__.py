"""Distributed gathers (:mod:`.dist_utils`).

The vMF maths and estimator moved to :mod:`mmlt.models.vmf` and k-means to
:mod:`mmlt.models.selfsup.kmeans` (beside PCL); their names stay importable
from here, and the old module paths (``mmlt.models.utils.vmf``,
``.bessel``, ``.vmf_estimator``, ``.kmeans``) are aliases of the new ones.
"""
import importlib

from .dist_utils import (all_gather_with_grad, gather_batch_sizes,
                         gather_no_grad, is_distributed)
# through the alias module, as before the move: the name ``kmeans`` here is
# the function, not the module
from .kmeans import KMeansResult, estimate_concentration, kmeans

# Resolved on first use, so that importing this package (as
# mmlt.models.vmf.vmf_estimator does, for the gathers) never imports a
# half-initialised mmlt.models.vmf.
_MOVED = {
    'VMFEstimator': 'mmlt.models.vmf',
    'bessel_ratio': 'mmlt.models.vmf',
    'estimate_kappa': 'mmlt.models.vmf',
    'expected_contrast_logits': 'mmlt.models.vmf',
    'log_bessel_iv': 'mmlt.models.vmf',
    'log_vmf_normalizer': 'mmlt.models.vmf',
}


def __getattr__(name: str):
    if name not in _MOVED:
        raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
    value = getattr(importlib.import_module(_MOVED[name]), name)
    globals()[name] = value
    return value


__all__ = [
    'all_gather_with_grad',
    'gather_batch_sizes',
    'gather_no_grad',
    'is_distributed',
    'KMeansResult',
    'estimate_concentration',
    'kmeans',
] + list(_MOVED)
