"""Cheap periodic validation for LVIS: the standard AP until the last one."""
from mmengine.hooks import Hook

from mmlt.engine.protocols import HasStandardAPMode
from mmlt.registry import HOOKS


@HOOKS.register_module()
class StandardAPUntilLastHook(Hook):
    """Validations during training before the last one compute only the
    standard LVIS AP.

    AP-fixed as Dave et al. run it (:class:`mmlt.PerClassTopKRoIHead` with
    ``dets_per_class``, :class:`mmlt.LVISFixedMetric`) keeps far more
    detections per image, with their masks, and evaluates up to ``C x K``
    of them: right for the final number, too dear for a validation every
    epoch. Before each validation that is not the run's last (the training
    iteration is below ``max_iters``) this hook calls
    ``set_standard_only(True)`` on every model module and every metric of
    the validation evaluator that declares
    :class:`~mmlt.engine.protocols.HasStandardAPMode`: the RoI head then
    predicts with MMDetection's setting (``standard_score_thr``,
    ``standard_max_per_img``) and the metric reports the standard AP only.
    After the validation everything is restored; the last validation, a
    validation outside training and every test compute all AP types.

    Example::

        train_cfg = dict(val_interval=1)
        custom_hooks = [..., dict(type='mmlt.StandardAPUntilLastHook')]
    """

    priority = 'NORMAL'

    def __init__(self) -> None:
        self._training = False

    def before_train(self, runner) -> None:
        self._training = True

    def after_train(self, runner) -> None:
        self._training = False

    def before_val_epoch(self, runner) -> None:
        periodic = self._training and runner.iter < runner.max_iters
        self._switch(runner, periodic)

    def after_val_epoch(self, runner, metrics=None) -> None:
        self._switch(runner, False)

    @staticmethod
    def _switch(runner, standard_only: bool) -> None:
        targets = list(runner.model.modules()) + list(
            getattr(runner.val_loop.evaluator, 'metrics', None) or [])
        for target in targets:
            if isinstance(target, HasStandardAPMode):
                target.set_standard_only(standard_only)
