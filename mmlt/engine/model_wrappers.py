"""DDP for channels-last training."""
import torch
from mmengine.model import MMDistributedDataParallel

from mmlt.registry import MODEL_WRAPPERS


@MODEL_WRAPPERS.register_module()
class ChannelsLastDistributedDataParallel(MMDistributedDataParallel):
    """MMEngine's DDP with the model's parameters in channels-last layout.

    With channels-last batches (``MultiViewDataPreprocessor(channels_last=
    True)``) the convolution gradients come out channels-last; DDP's
    gradient buckets follow the parameters' strides, so contiguous
    parameters make PyTorch warn "Grad strides do not match bucket view
    strides" and copy every gradient into its bucket at each step. Putting
    the parameters in the batches' layout before DDP builds its buckets
    removes the copies.
    """

    def __init__(self, module, **kwargs) -> None:
        module = module.to(memory_format=torch.channels_last)
        super().__init__(module=module, **kwargs)
