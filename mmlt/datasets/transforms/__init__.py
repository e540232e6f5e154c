from .color_jitter import ColorJitter  # noqa: F401
from .randaugment_mc import RandAugmentMC  # noqa: F401
