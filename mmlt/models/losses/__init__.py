from .bcl_loss import BCLLoss
from .logit_adjust_loss import (LogitAdjustLoss, posthoc_adjust,
                                weight_reduce_loss)
from .supcon_loss import SupConLoss
from .proco_loss import ProCoLoss
from .info_nce_loss import (DecoupledContrastiveLoss, InfoNCELoss,
                            ProtoNCELoss)

__all__ = [
    'BCLLoss',
    'LogitAdjustLoss',
    'posthoc_adjust',
    'weight_reduce_loss',
    'SupConLoss',
    'ProCoLoss',
    'InfoNCELoss',
    'DecoupledContrastiveLoss',
    'ProtoNCELoss',
]
