from .bcl_loss import BCLLoss
from .logit_adjust_loss import LogitAdjustLoss
from .supcon_loss import SupConLoss
from .proco_loss import ProCoLoss
from .info_nce_loss import DecoupledContrastiveLoss, InfoNCELoss
from .proto_nce_loss import ProtoNCELoss
from .utils import weight_reduce_loss

__all__ = [
    'BCLLoss',
    'LogitAdjustLoss',
    'weight_reduce_loss',
    'SupConLoss',
    'ProCoLoss',
    'InfoNCELoss',
    'DecoupledContrastiveLoss',
    'ProtoNCELoss',
]
