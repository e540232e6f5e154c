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

    Its defaults are those of MMEngine's own DDP wrapper rather than torch's:
    buffers are not broadcast from rank 0 before every forward (BatchNorm
    statistics stay rank-local, and buffers that must be global, such as
    ProCo's estimator sums, are reduced by their owners).
    ``find_unused_parameters`` comes from ``model_wrapper_cfg`` or, as for
    MMEngine's default wrapper, the config's top-level
    ``find_unused_parameters`` (``mmlt.compat`` hands it over).

    Args:
        module (nn.Module): The model to wrap.
        broadcast_buffers (bool): Broadcast rank 0's buffers at every
            forward. Defaults to False.
        find_unused_parameters (bool): Let DDP allow parameters that get no
            gradient in a step. Defaults to False.
        **kwargs: Further arguments of ``MMDistributedDataParallel``.
    """

    def __init__(self,
                 module,
                 broadcast_buffers: bool = False,
                 find_unused_parameters: bool = False,
                 **kwargs) -> None:
        module = module.to(memory_format=torch.channels_last)
        super().__init__(
            module=module,
            broadcast_buffers=broadcast_buffers,
            find_unused_parameters=find_unused_parameters,
            **kwargs)
