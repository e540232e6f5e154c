"""Optimizer wrappers that survive a non-finite step, with AMP also on a CPU.

MMEngine's ``AmpOptimWrapper`` skips a step whose fp16 gradients overflow
(GradScaler), but it refuses to run without a GPU, and neither it nor
``OptimWrapper`` notices a run whose losses stay NaN. These wrappers:

- skip the optimizer step when any gradient is NaN or Inf (one host read per
  step, as the logger's ``loss.item()`` already does; the decision is the
  same on every rank because it is taken after DDP has averaged the
  gradients), so momentum and weights are untouched;
- put the BatchNorm running statistics (``running_mean``, ``running_var``,
  ``num_batches_tracked``) of a skipped step back to what they were before
  its batches: the forward moved them before the gradients were known. They
  are copied on the device when the model enters :meth:`optim_context` at
  the start of an accumulation window and copied back in :meth:`step`, so no
  host read is added;
- raise after ``max_nonfinite_steps`` consecutive skipped steps, naming the
  iteration and the likely fixes, instead of training on garbage;
- refuse to start on the CPU where GPUs are expected but torch sees none
  (:func:`mmlt.compat.check_gpu_expected`; ``MMLT_ALLOW_CPU=1`` opts in);
- run mixed precision, one wrapper per kind: float16 with dynamic loss
  scaling on CUDA (:class:`Float16AmpOptimWrapper`, MMEngine's wrapper) and
  bfloat16 without a loss scaler on CUDA or a CPU
  (:class:`Bfloat16AmpOptimWrapper`); ``mmlt.AmpOptimWrapper`` (``--amp``,
  ``--amp-dtype``) builds the one its ``dtype`` names.

ProCo's estimator leaves out any batch with a non-finite feature on its own
(docs/gpu.md), so a skipped step does not reach its statistics either.
"""
from contextlib import contextmanager

import torch
from mmengine.logging import print_log
from mmengine.optim import AmpOptimWrapper as MMEngineAmpOptimWrapper
from mmengine.optim import OptimWrapper

from mmlt.compat import check_gpu_expected
from mmlt.registry import OPTIM_WRAPPERS
from mmlt.utils.validation import check_int

#: The buffers of a normalisation layer that its training forward updates.
NORM_STATISTICS = ('running_mean', 'running_var', 'num_batches_tracked')


def norm_statistics(model: torch.nn.Module) -> list:
    """The running statistics of every normalisation layer of ``model``.

    Args:
        model (nn.Module): The model, wrapped or not.

    Returns:
        list[Tensor]: The buffers named in :data:`NORM_STATISTICS` of every
        submodule (torch's BatchNorm and SyncBatchNorm, mmcv's
        SyncBatchNorm, tracking InstanceNorm), in module order.
    """
    return [
        buffer for module in model.modules()
        for name, buffer in module.named_buffers(recurse=False)
        if name in NORM_STATISTICS
    ]


class _SkipNonFiniteSteps:
    """Mixin: the step logic shared by both wrappers."""

    def _init_skipping(self, max_nonfinite_steps: int) -> None:
        self.max_nonfinite_steps = check_int('max_nonfinite_steps',
                                             max_nonfinite_steps)
        self.consecutive_nonfinite_steps = 0
        self.skipped_steps = 0
        self._norm_live = None  # the model's statistics, while a step is due
        self._norm_saved = None  # their copy from the window's first batch

    def _save_norm_statistics(self, model: torch.nn.Module) -> None:
        """Copy the model's normalisation statistics, on their device, at the
        first batch of an accumulation window."""
        window_start = self._inner_count % self._accumulative_counts == 0
        if self._norm_live is not None and not window_start:
            return  # later batches of the window: keep the first copy
        live = norm_statistics(model)
        saved = self._norm_saved
        if saved is None or len(saved) != len(live) or any(
                s.shape != b.shape or s.dtype != b.dtype
                or s.device != b.device for s, b in zip(saved, live)):
            self._norm_saved = [b.detach().clone() for b in live]
        elif live:
            with torch.no_grad():
                torch._foreach_copy_(saved, live)
        self._norm_live = live

    def _settle_norm_statistics(self, finite: bool) -> None:
        """At a step: restore the window's statistics if it is skipped."""
        live, self._norm_live = self._norm_live, None
        if not finite and live:
            with torch.no_grad():
                torch._foreach_copy_(live, self._norm_saved)

    def _gradients_are_finite(self) -> bool:
        grads = [
            param.grad for group in self.optimizer.param_groups
            for param in group['params'] if param.grad is not None
        ]
        if not grads:
            return True
        total = torch.nn.utils.get_total_norm(grads, error_if_nonfinite=False)
        return bool(torch.isfinite(total))  # the one host read of a step

    def _settle_step(self) -> bool:
        """Whether the due step's gradients are finite; a non-finite step's
        normalisation statistics are restored and the step is counted."""
        finite = self._gradients_are_finite()
        self._settle_norm_statistics(finite)
        self._record(finite)
        return finite

    @contextmanager
    def optim_context(self, model):
        self._save_norm_statistics(model)
        with super().optim_context(model):
            yield

    def _record(self, finite: bool) -> None:
        if finite:
            self.consecutive_nonfinite_steps = 0
            return
        self.skipped_steps += 1
        self.consecutive_nonfinite_steps += 1
        iteration = self._inner_count  # 1-based, as in the training log
        print_log(
            f'non-finite gradients at iteration {iteration}: the optimizer '
            f'step is skipped ({self.consecutive_nonfinite_steps} in a row, '
            f'{self.skipped_steps} in all)',
            logger='current',
            level=30)
        if self.consecutive_nonfinite_steps >= self.max_nonfinite_steps:
            raise FloatingPointError(
                f'{self.consecutive_nonfinite_steps} consecutive steps up to '
                f'iteration {iteration} had NaN/Inf gradients, so training '
                'stopped. Likely fixes: a lower learning rate or a longer '
                'warm-up, gradient clipping (optim_wrapper.clip_grad='
                'dict(max_norm=...)), --amp off or bfloat16 instead of '
                'float16, and a check of the input data. Raise '
                'optim_wrapper.max_nonfinite_steps to tolerate longer runs '
                'of bad steps.')


@OPTIM_WRAPPERS.register_module()
class SkipNonFiniteOptimWrapper(_SkipNonFiniteSteps, OptimWrapper):
    """``OptimWrapper`` that skips steps with NaN/Inf gradients.

    Args:
        max_nonfinite_steps (int): Consecutive skipped steps after which
            training stops with an error. Defaults to 10.
        **kwargs: Arguments of ``OptimWrapper``.
    """

    def __init__(self, max_nonfinite_steps: int = 10, **kwargs) -> None:
        check_gpu_expected('training')
        super().__init__(**kwargs)
        self._init_skipping(max_nonfinite_steps)

    def step(self, **kwargs) -> None:
        if self._settle_step():
            super().step(**kwargs)


@OPTIM_WRAPPERS.register_module()
class Float16AmpOptimWrapper(_SkipNonFiniteSteps, MMEngineAmpOptimWrapper):
    """float16 autocast with dynamic loss scaling on CUDA: MMEngine's
    ``AmpOptimWrapper`` (GradScaler skips an overflowing step and lowers the
    scale), plus the non-finite bookkeeping of this module.

    Args:
        loss_scale (str | float | dict): As in MMEngine. Defaults to
            ``'dynamic'``.
        max_nonfinite_steps (int): Consecutive skipped steps after which
            training stops. The first steps of a run are skipped while the
            scale settles, so the default is larger than
            :class:`SkipNonFiniteOptimWrapper`'s. Defaults to 30.
        **kwargs: Arguments of ``OptimWrapper``.
    """

    def __init__(self,
                 loss_scale='dynamic',
                 max_nonfinite_steps: int = 30,
                 **kwargs) -> None:
        if not torch.cuda.is_available():
            raise RuntimeError(
                'float16 mixed precision needs CUDA (its loss scaling runs on '
                'the GPU) and torch sees no GPU; use --amp-dtype bfloat16 '
                '(optim_wrapper.dtype=\'bfloat16\'), which runs on a CPU')
        super().__init__(loss_scale=loss_scale, dtype=torch.float16, **kwargs)
        self._init_skipping(max_nonfinite_steps)

    def step(self, **kwargs) -> None:
        self._settle_step()
        super().step(**kwargs)  # GradScaler skips a non-finite step itself


@OPTIM_WRAPPERS.register_module()
class Bfloat16AmpOptimWrapper(SkipNonFiniteOptimWrapper):
    """bfloat16 autocast, no loss scaling (bfloat16 has float32's range), on
    CUDA when torch sees a GPU and on the CPU otherwise.

    Args:
        max_nonfinite_steps (int): As in :class:`SkipNonFiniteOptimWrapper`.
            Defaults to 30, as :class:`Float16AmpOptimWrapper`.
        **kwargs: Arguments of ``OptimWrapper``.
    """

    cast_dtype = torch.bfloat16

    def __init__(self, max_nonfinite_steps: int = 30, **kwargs) -> None:
        self.device_type = 'cuda' if torch.cuda.is_available() else 'cpu'
        if self.device_type == 'cpu':
            check_gpu_expected('--amp (bfloat16 autocast)')
        super().__init__(max_nonfinite_steps=max_nonfinite_steps, **kwargs)

    def load_state_dict(self, state_dict: dict) -> None:
        # A checkpoint of a float16 run holds its loss scaler: not needed.
        state_dict = dict(state_dict)
        state_dict.pop('loss_scaler', None)
        super().load_state_dict(state_dict)

    @contextmanager
    def optim_context(self, model):
        with super().optim_context(model), torch.autocast(
                self.device_type, dtype=self.cast_dtype):
            yield


#: ``optim_wrapper.dtype`` (``--amp-dtype``) -> the wrapper that runs it.
AMP_WRAPPERS = {
    'float16': Float16AmpOptimWrapper,
    'bfloat16': Bfloat16AmpOptimWrapper
}


def default_amp_dtype() -> str:
    """float16 where torch sees a GPU (as MMEngine's ``--amp``), bfloat16
    on a CPU."""
    return 'float16' if torch.cuda.is_available() else 'bfloat16'


@OPTIM_WRAPPERS.register_module()
class AmpOptimWrapper:
    """``mmlt.AmpOptimWrapper``: builds the wrapper of ``dtype`` (the type
    that ``--amp`` and older configs name).

    Args:
        dtype (str | torch.dtype, optional): ``'float16'``
            (:class:`Float16AmpOptimWrapper`, CUDA) or ``'bfloat16'``
            (:class:`Bfloat16AmpOptimWrapper`). Defaults to
            :func:`default_amp_dtype`.
        loss_scale: float16 only, as in MMEngine.
        **kwargs: Arguments of the chosen wrapper.
    """

    def __new__(cls, dtype=None, loss_scale='dynamic', **kwargs):
        if isinstance(dtype, torch.dtype):
            dtype = str(dtype).replace('torch.', '')
        dtype = dtype or default_amp_dtype()
        if dtype not in AMP_WRAPPERS:
            raise ValueError(
                f'optim_wrapper.dtype (--amp-dtype) must be one of '
                f'{sorted(AMP_WRAPPERS)}, got {dtype!r}')
        if dtype == 'float16':
            kwargs['loss_scale'] = loss_scale
        return AMP_WRAPPERS[dtype](**kwargs)
