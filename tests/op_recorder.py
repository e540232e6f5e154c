"""Record the aten ops a piece of code runs (CPU stand-in for CUDA's sync
debug mode): a host read shows up as ``_local_scalar_dense`` (``.item()``,
``int(t)``, ``bool(t)``), and ops that size their output from values
(``nonzero``, ``unique``, ``masked_select``) sync a GPU too."""
import torch
from torch.utils._python_dispatch import TorchDispatchMode

PRODUCTS = {'mm', 'addmm', 'bmm', 'baddbmm', 'matmul', 'dot', 'mv'}
HOST_SYNCS = {
    '_local_scalar_dense', 'nonzero', 'masked_select', 'unique', '_unique2',
    'unique_consecutive', 'is_nonzero'
}


class OpRecorder(TorchDispatchMode):
    """``ops``: every aten op run; ``product_dtypes``: the input dtypes of
    each matrix product."""

    def __init__(self):
        super().__init__()
        self.ops = set()
        self.product_dtypes = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        self.ops.add(name)
        if name in PRODUCTS:
            self.product_dtypes.append(
                tuple(a.dtype for a in args if isinstance(a, torch.Tensor)))
        return func(*args, **(kwargs or {}))

    @property
    def host_syncs(self):
        return self.ops & HOST_SYNCS
