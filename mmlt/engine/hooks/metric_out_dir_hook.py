"""Tell metrics that write files where the run's work dir is."""
from mmengine.hooks import Hook

from mmlt.engine.protocols import NeedsOutDir
from mmlt.registry import HOOKS


@HOOKS.register_module()
class MetricOutDirHook(Hook):
    """Give the run's ``work_dir`` to the metrics that write files.

    A metric cannot see the runner, so before validating or testing this
    hook calls ``set_out_dir(runner.work_dir)`` on every metric of the loop's
    evaluator that declares :class:`~mmlt.engine.protocols.NeedsOutDir`
    (:class:`mmlt.LongTailAccuracy`, :class:`mmlt.LVISFixedMetric`). A metric
    given its own output path keeps it. mmlt's configs list it in
    ``default_hooks`` (as ``metric_out_dir``), so children that replace
    ``custom_hooks`` keep it.
    """

    priority = 'VERY_HIGH'

    def before_val(self, runner) -> None:
        self._set_out_dirs(runner.val_loop.evaluator, runner.work_dir)

    def before_test(self, runner) -> None:
        self._set_out_dirs(runner.test_loop.evaluator, runner.work_dir)

    @staticmethod
    def _set_out_dirs(evaluator, work_dir: str) -> None:
        for metric in getattr(evaluator, 'metrics', None) or []:
            if isinstance(metric, NeedsOutDir):
                metric.set_out_dir(work_dir)
