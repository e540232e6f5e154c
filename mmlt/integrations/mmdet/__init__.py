"""Parts that subclass MMDetection classes; registered only when mmdet
is installed and imports, so that ``import mmlt`` needs just torch and
mmengine."""
from mmlt.integrations._host import host_available

if host_available(('mmdet', 'mmdet.models', 'mmdet.datasets')):
    from . import cpu_autocast
    cpu_autocast.apply()
    from .contrastive_bbox_head import ContrastiveBBoxHead  # noqa: F401
    from .contrastive_roi_head import ContrastiveRoIHead  # noqa: F401
    from .det_logit_adjust_loss import DetLogitAdjustLoss  # noqa: F401
    from .lvis import (LVISV1WithClassCounts,  # noqa: F401
                       counts_from_category_image_map)
    from .lvis_fixed_metric import LVISFixedMetric  # noqa: F401
    from .per_class_topk_roi_head import (PerClassTopKRoIHead,  # noqa: F401
                                          topk_per_class)
    from .rfs_matched_class_aware_sampler import \
        RFSMatchedClassAwareSampler  # noqa: F401

    __all__ = [
        'ContrastiveBBoxHead', 'ContrastiveRoIHead', 'DetLogitAdjustLoss',
        'LVISV1WithClassCounts', 'counts_from_category_image_map',
        'LVISFixedMetric', 'PerClassTopKRoIHead', 'topk_per_class',
        'RFSMatchedClassAwareSampler'
    ]
