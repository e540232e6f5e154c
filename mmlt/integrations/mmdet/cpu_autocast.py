"""mmcv ops on bfloat16 CPU tensors (``--amp`` without a GPU).

mmcv 2.1.0's CPU kernels of ``nms`` and ``RoIAlign`` dispatch on float and
double only ("expected scalar type Float but found BFloat16"), and unlike
torch's own ops they have no autocast rule. While CPU autocast is on, their
bfloat16 CPU inputs (and incoming gradients) are cast to float32 and the
results back to bfloat16, as the CUDA kernels do with half; float32 and CUDA
tensors pass through unchanged.
Guard: mmcv < 2.3 (:func:`needed`; seen in 2.1.0, re-check a newer mmcv
before extending it). Applied when the MMDetection integration is imported
(fix 5 of :mod:`mmlt.compat`).
"""
import functools

import torch

# (module, autograd Function) of the ops two-stage detectors call.
_OPS = (('mmcv.ops.nms', 'NMSop'), ('mmcv.ops.roi_align',
                                    'RoIAlignFunction'))


def _to_float32(values):
    return tuple(
        value.float() if isinstance(value, torch.Tensor)
        and value.device.type == 'cpu' and value.dtype == torch.bfloat16 else
        value for value in values)


def _float32_forward(forward):
    """Run in float32 on bfloat16 CPU inputs; return the inputs' dtype (as
    the CUDA kernels do for half), so callers that fill bfloat16 buffers with
    the result keep working."""

    @functools.wraps(forward)
    def wrapped(ctx, *args, **kwargs):
        first = next((a for a in args if isinstance(a, torch.Tensor)), None)
        if first is None or first.device.type != 'cpu' or \
                first.dtype != torch.bfloat16:
            return forward(ctx, *args, **kwargs)
        output = forward(ctx, *_to_float32(args), **kwargs)
        if isinstance(output, torch.Tensor) and output.is_floating_point():
            output = output.to(first.dtype)
        return output

    return wrapped


def _float32_backward(backward):

    @functools.wraps(backward)
    def wrapped(ctx, *grads):
        return backward(ctx, *_to_float32(grads))

    return wrapped


#: The first mmcv release this fix leaves alone (mmcv 2.2.0 is the latest).
MMCV_UNCHECKED = '2.3.0'


def _mmcv_version():
    import mmcv
    from mmengine.utils import digit_version
    return digit_version(mmcv.__version__)


def needed() -> bool:
    """The guard: mmcv < 2.3."""
    from mmengine.utils import digit_version
    try:
        return _mmcv_version() < digit_version(MMCV_UNCHECKED)
    except ImportError:
        return False


def apply() -> bool:
    """Patch the ops where :func:`needed`; returns whether it did."""
    import importlib
    if not needed():
        return False
    for module_name, function_name in _OPS:
        try:
            function = getattr(importlib.import_module(module_name),
                               function_name)
        except (ImportError, AttributeError):  # mmcv-lite or a newer mmcv
            continue
        if getattr(function, '_mmlt_float32_on_cpu', False):
            continue
        function.forward = staticmethod(_float32_forward(function.forward))
        if 'backward' in vars(function):
            function.backward = staticmethod(
                _float32_backward(function.backward))
        function._mmlt_float32_on_cpu = True
    return True
