from .hooks import *  # noqa: F401,F403
from .optim_wrappers import AmpOptimWrapper, SkipNonFiniteOptimWrapper  # noqa: F401,E501
from .model_wrappers import ChannelsLastDistributedDataParallel  # noqa: F401,E501
