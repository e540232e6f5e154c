"""Record the aten ops a piece of code runs (CPU stand-in for CUDA's sync
debug mode): a host read shows up as ``_local_scalar_dense`` (``.item()``,
``int(t)``, ``bool(t)``), and ops that size their output from values
(``nonzero``, ``unique``, ``masked_select``) sync a GPU too."""
import os.path as osp
import sys

import torch
from torch.utils._python_dispatch import TorchDispatchMode

_TORCH_DIR = osp.dirname(torch.__file__)

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
        self.sync_frames = []  # (op, file, line) of each host sync

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        self.ops.add(name)
        if name in HOST_SYNCS:
            self.sync_frames.append((name, ) + _caller())
        if name in PRODUCTS:
            self.product_dtypes.append(
                tuple(a.dtype for a in args if isinstance(a, torch.Tensor)))
        return func(*args, **(kwargs or {}))

    @property
    def host_syncs(self):
        return self.ops & HOST_SYNCS


def _caller():
    """File and line of the innermost frame outside torch and this file:
    the code that asked for the op."""
    frame = sys._getframe(2)
    while frame is not None and (
            frame.f_code.co_filename.startswith(_TORCH_DIR)
            or frame.f_code.co_filename == __file__):
        frame = frame.f_back
    if frame is None:
        return ('?', 0)
    return (frame.f_code.co_filename, frame.f_lineno)


def mmlt_syncs(recorder: OpRecorder) -> list:
    """The host syncs that mmlt's own code asked for."""
    package = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))),
                       'mmlt')
    return [(op, osp.relpath(path, osp.dirname(package)), line)
            for op, path, line in recorder.sync_frames
            if osp.abspath(path).startswith(package + osp.sep)]
