from .hooks import *  # noqa: F401,F403
from .model_wrappers import ChannelsLastDistributedDataParallel  # noqa
from .optim_wrappers import (AmpOptimWrapper,  # noqa: F401
                             Bfloat16AmpOptimWrapper, Float16AmpOptimWrapper)
from .optim_wrappers import SkipNonFiniteOptimWrapper  # noqa: F401
from .schedulers import (FixMatchCosineLR,  # noqa: F401
                         FixMatchCosineParamScheduler)
