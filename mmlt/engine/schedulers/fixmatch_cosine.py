"""FixMatch's learning-rate schedule: ``lr(k) = lr0 cos(7 pi k / (16 K))``.

FixMatch (Sohn et al., NeurIPS 2020, section 4 and appendix B) decays the
learning rate by a cosine that stops a fraction of the way to zero:
``eta cos(7 pi k / (16 K))`` at iteration ``k`` of ``K``, which ends at
``cos(7 pi / 16) = 0.195`` of the initial rate. DARP, DASO and ACR train
their long-tailed semi-supervised CIFAR runs after FixMatch (ACR with this
schedule, DASO with a constant rate). MMEngine's ``CosineAnnealingLR`` goes
to ``eta_min`` over half a period, so it cannot express it.
"""
import math
from typing import Optional, Union

from mmengine.optim import BaseOptimWrapper
from mmengine.optim.scheduler.lr_scheduler import LRSchedulerMixin
from mmengine.optim.scheduler.param_scheduler import INF, _ParamScheduler
from torch.optim import Optimizer

from mmlt.registry import PARAM_SCHEDULERS


@PARAM_SCHEDULERS.register_module()
class FixMatchCosineParamScheduler(_ParamScheduler):
    """Scale a parameter by ``cos(fraction * pi * k / T_max)``.

    Step ``k`` counts from ``begin`` (0 there, so the first steps use the
    initial value), and ``k`` stops at ``T_max``: after it the value stays
    at ``cos(fraction * pi)`` of the initial one. Like MMEngine's schedulers
    the update is chainable: each step multiplies the current value by
    ``f(k) / f(k - 1)``, so a scheduler that changes the value at the same
    time (a warm-up) composes with it; alone, the value is
    ``initial * f(k)`` at every step (tested against the closed form).

    Args:
        optimizer (Optimizer | BaseOptimWrapper): The optimizer.
        param_name (str): The parameter to schedule, e.g. ``'lr'``.
        fraction (float): The part of a half period to go, in ``(0, 0.5]``:
            FixMatch's ``7 / 16`` (default) ends at ``cos(7 pi / 16)`` =
            0.195 of the initial value, ``0.5`` at 0.
        T_max (int, optional): ``K``, the steps of the whole decay. Defaults
            to ``end - begin``.
        begin (int): The first step it acts on. Defaults to 0.
        end (int): The step it stops at. Defaults to INF (the Runner sets
            the end of training).
        last_step (int): As for MMEngine's schedulers. Defaults to -1.
        by_epoch (bool): Steps are epochs (True, default) or iterations.
        verbose (bool): Print every update. Defaults to False.
    """

    def __init__(self,
                 optimizer: Union[Optimizer, BaseOptimWrapper],
                 param_name: str,
                 fraction: float = 7 / 16,
                 T_max: Optional[int] = None,
                 begin: int = 0,
                 end: int = INF,
                 last_step: int = -1,
                 by_epoch: bool = True,
                 verbose: bool = False):
        if not 0 < fraction <= 0.5:
            raise ValueError(f'fraction={fraction!r}: must be in (0, 0.5] '
                             '(FixMatch: 7 / 16)')
        self.fraction = float(fraction)
        self.T_max = T_max or (end - begin)
        if self.T_max >= INF or self.T_max < 1:
            raise ValueError(
                f'T_max={self.T_max}: give T_max or a finite end (the '
                'Runner sets end to the end of training when it is unset)')
        super().__init__(optimizer, param_name=param_name, begin=begin,
                         end=end, last_step=last_step, by_epoch=by_epoch,
                         verbose=verbose)

    @classmethod
    def build_iter_from_epoch(cls, *args, T_max=None, begin=0, end=INF,
                              by_epoch=True, epoch_length=None, **kwargs):
        """Build an iteration-based instance from an epoch-based config
        (``convert_to_iter_based=True``): ``T_max``, ``begin`` and ``end``
        are multiplied by ``epoch_length``."""
        if not by_epoch:
            raise ValueError('convert_to_iter_based needs by_epoch=True')
        if epoch_length is None or epoch_length <= 0:
            raise ValueError(f'epoch_length must be a positive integer, got '
                             f'{epoch_length!r}')
        if T_max is not None:
            T_max = T_max * epoch_length
        begin = int(begin * epoch_length)
        if end != INF:
            end = int(end * epoch_length)
        return cls(*args, T_max=T_max, begin=begin, end=end, by_epoch=False,
                   **kwargs)

    def factor(self, step: int) -> float:
        """``cos(fraction * pi * min(step, T_max) / T_max)``."""
        return math.cos(self.fraction * math.pi * min(step, self.T_max) /
                        self.T_max)

    def _get_value(self) -> list:
        groups = self.optimizer.param_groups
        if self.last_step == 0:
            return [group[self.param_name] for group in groups]
        previous = self.factor(self.last_step - 1)
        if previous <= 0:  # the end of a decay to 0: stays there
            return [group[self.param_name] for group in groups]
        ratio = self.factor(self.last_step) / previous
        return [group[self.param_name] * ratio for group in groups]


@PARAM_SCHEDULERS.register_module()
class FixMatchCosineLR(LRSchedulerMixin, FixMatchCosineParamScheduler):
    """FixMatch's learning rate: ``lr0 cos(fraction * pi * k / K)``.

    ``fraction = 7 / 16`` by default (Sohn et al., NeurIPS 2020); see
    :class:`FixMatchCosineParamScheduler` for the arguments. In a config::

        param_scheduler = [dict(type='mmlt.FixMatchCosineLR', by_epoch=True,
                                convert_to_iter_based=True)]

    decays every iteration over the whole run (``end`` defaults to the last
    epoch).
    """
