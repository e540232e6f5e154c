"""Advance the window of the vMF estimators at epoch (or window) boundaries."""
import math
from typing import Optional

from mmengine.dist import get_world_size
from mmengine.hooks import Hook

from mmlt.engine.protocols import HasStatisticsWindow
from mmlt.registry import HOOKS
from mmlt.utils.validation import check_int


@HOOKS.register_module()
class VMFWindowHook(Hook):
    """Start a new statistics window in every vMF estimator of the model.

    ProCo estimates each class's von Mises-Fisher distribution from the
    features of the previous epoch plus the current one so far (Du et al.,
    TPAMI 2024). This hook calls ``start_epoch(index)`` on every module that
    declares :class:`~mmlt.engine.protocols.HasStatisticsWindow` (e.g.
    :class:`mmlt.VMFEstimator` inside a loss or an RoI head) at the start of
    each training epoch. With an iteration-based
    loop, a "window" is ``window_iters`` iterations (default: one pass over
    the data by each rank, ``ceil(len(dataset) / (world_size * batch))``
    iterations; the dataloader's own length cannot be used, because
    MMEngine's ``InfiniteSampler`` reports the whole dataset's size on every
    rank).

    Resume is exact: a checkpoint is written after an epoch (or iteration)
    ends and before the next window starts, and the estimators' sums and
    counts are buffers in the checkpoint, so the resumed run starts the same
    window from the same statistics as an uninterrupted run.

    With ``window_iters`` set, windows are ``window_iters`` iterations long
    in epoch-based loops too (and no longer follow epochs): LVIS epochs are
    long (about 9k iterations of 16 images under repeat-factor sampling), so
    an epoch window keeps a random-init head's features in the estimate for
    a sixth of a 1x schedule (docs/detection.md has the arithmetic).

    Args:
        window_iters (int, optional): Iterations per window. Defaults to
            None: one epoch (epoch-based loops) or one pass over the data
            per rank (iteration-based loops).
    """

    priority = 'NORMAL'

    def __init__(self, window_iters: Optional[int] = None):
        self.window_iters = None if window_iters is None else check_int(
            'window_iters', window_iters)

    @staticmethod
    def estimators(model):
        model = getattr(model, 'module', model)
        return [
            m for m in model.modules()
            if isinstance(m, HasStatisticsWindow)
        ]

    def _start_window(self, runner, window_index):
        # The index makes a repeated call (a second hook, a resume) a no-op.
        for estimator in self.estimators(runner.model):
            estimator.start_epoch(window_index)

    @staticmethod
    def _iter_based(runner):
        from mmengine.runner import IterBasedTrainLoop
        return isinstance(runner.train_loop, IterBasedTrainLoop)

    def before_train_epoch(self, runner) -> None:
        if self.window_iters is None and not self._iter_based(runner):
            self._start_window(runner, runner.epoch)

    @staticmethod
    def iterations_per_pass(dataloader) -> int:
        """Iterations in which each rank sees its share of the data once."""
        batch_size = dataloader.batch_size or getattr(
            dataloader.batch_sampler, 'batch_size', None)
        if not batch_size:
            raise ValueError(
                'VMFWindowHook cannot tell the batch size of the train '
                'dataloader; set window_iters explicitly')
        per_pass = batch_size * get_world_size()
        return max(1, math.ceil(len(dataloader.dataset) / per_pass))

    def before_train_iter(self,
                          runner,
                          batch_idx: int,
                          data_batch=None) -> None:
        if self.window_iters is not None or self._iter_based(runner):
            window = self.window_iters or self.iterations_per_pass(
                runner.train_dataloader)
            if runner.iter % window == 0:
                self._start_window(runner, runner.iter // window)
