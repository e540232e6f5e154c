"""Hand the training set's per-class counts to every module that needs them."""
from typing import Optional, Sequence

import numpy as np
from mmengine.hooks import Hook

from mmlt.datasets import lt_base
from mmlt.engine.protocols import NeedsClassCounts
from mmlt.registry import HOOKS
from mmlt.datasets.stream_counts import loader_sampler, stream_class_counts
from mmlt.utils.validation import check_choice, check_number


@HOOKS.register_module()
class ClassCountsHook(Hook):
    """Set the training set's class counts on losses, heads and metrics.

    Before training (and before validation/testing when a training set is
    configured) every module of the model, and every metric, that declares
    :class:`~mmlt.engine.protocols.NeedsClassCounts` receives the per-class
    training counts through ``set_class_counts(counts)``. They are kept in
    the modules' buffers, so a checkpoint carries them and a resumed run uses
    the same prior. Targets are found by protocol (``isinstance``), not by a
    path or a method name, so the hook works with any model and wrapper.
    The model gets them before the run too, so that the copy MMEngine's
    EMAHook makes of it in ``before_run`` has them.

    Args:
        class_counts (Sequence[int], optional): use these counts instead of
            reading them from the training dataset.
        pseudo_count (float): Added to every class's count given to the
            model's modules (the priors), so that a class without training
            samples (an LVIS subset, an open-vocabulary split) gets a finite
            prior instead of ``log 0``; metrics keep the true counts for
            their many/medium/few groups. Defaults to 0.
        prior (str): Counts behind the model's priors. ``'file'``: the
            training set's own counts (the annotation file). ``'stream'``:
            the expected counts of one epoch of the training sampler over
            the (wrapped) dataset, i.e. what the classifier is trained on:
            repeat-factor sampling weights each image by its repeats,
            class-aware sampling by its expected draws
            (:func:`mmlt.datasets.stream_counts.stream_class_counts`).
            Metrics always keep the file counts. Defaults to ``'file'``.
    """

    priority = 'VERY_HIGH'

    def __init__(self,
                 class_counts: Optional[Sequence[int]] = None,
                 pseudo_count: float = 0,
                 prior: str = 'file'):
        self.class_counts = (None if class_counts is None else np.asarray(
            class_counts, dtype=np.int64))
        self.pseudo_count = check_number('pseudo_count', pseudo_count,
                                         minimum=0)
        self.prior = check_choice('prior', prior, ('file', 'stream'))
        if self.prior == 'stream' and self.class_counts is not None:
            raise ValueError("prior='stream' computes the counts from the "
                             'training sampler; drop class_counts or use '
                             "prior='file'")
        self._counts = None
        self._prior = None

    def _prior_counts(self, runner) -> np.ndarray:
        """Counts for the model's priors (``prior`` plus the pseudo-count),
        computed once per run."""
        if self._prior is not None:
            return self._prior
        if self.prior == 'stream':
            loader = runner.train_dataloader
            counts = stream_class_counts(
                loader.dataset, loader_sampler(loader),
                num_classes=len(self._get_counts(runner)))
            runner.logger.info(
                'ClassCountsHook: priors from the sampled stream (%.0f '
                'labels per epoch; the file has %d)', counts.sum(),
                self._get_counts(runner).sum())
        else:
            counts = self._get_counts(runner)
        if self.pseudo_count:
            counts = counts + self.pseudo_count
        empty = np.flatnonzero(np.asarray(counts) <= 0)
        if empty.size:
            raise ValueError(
                f'ClassCountsHook: classes {empty.tolist()} have no '
                f'training samples in the {self.prior!r} counts, so their '
                'log prior would be log(0) = -inf. Set '
                "dict(type='mmlt.ClassCountsHook', pseudo_count=1) (the "
                'metrics keep the true counts), or drop those classes '
                'from the training set.')
        self._prior = counts
        return counts

    def _get_counts(self, runner, training: bool = True):
        """The training file's counts. ``training``: the runner trains, so
        its train loop is built; otherwise (a test-only run) the training
        dataset is built from the config."""
        if self.class_counts is not None:
            return self.class_counts
        if self._counts is None:
            if training:
                dataset = runner.train_dataloader.dataset
            else:
                dataset = self._config_train_dataset(runner)
            self._counts = lt_base.class_counts(dataset)
        return self._counts

    @staticmethod
    def _config_train_dataset(runner):
        """The training dataset of a run that does not train (building the
        train loop would also build its sampler, e.g. LVIS repeat factors)."""
        loader = runner.cfg.get('train_dataloader')
        if loader is None:
            raise ValueError('no train_dataloader in the config')
        dataset = loader['dataset']
        if isinstance(dataset, dict):
            from mmengine.registry import DATASETS
            return DATASETS.build(dataset)
        return dataset

    @staticmethod
    def _targets(runner):
        model = runner.model
        model = getattr(model, 'module', model)
        for module in model.modules():
            if isinstance(module, NeedsClassCounts):
                yield module

    @staticmethod
    def _metric_targets(evaluator):
        for metric in getattr(evaluator, 'metrics', []) or []:
            if isinstance(metric, NeedsClassCounts):
                yield metric

    def _set_model_counts(self, runner) -> None:
        modules = list(self._targets(runner))
        if modules:
            prior_counts = self._prior_counts(runner)
            for module in modules:
                module.set_class_counts(prior_counts)

    @staticmethod
    def _trains(runner) -> bool:
        """Whether ``before_run`` comes from ``Runner.train`` (the only
        entry point that builds the optimizer wrapper before it)."""
        from mmengine.optim import BaseOptimWrapper
        return isinstance(getattr(runner, 'optim_wrapper', None),
                          BaseOptimWrapper)

    def before_run(self, runner) -> None:
        # MMEngine's EMAHook (lower priority) copies the model in its
        # before_run: set the priors first, so the copy has them too (it
        # syncs buffers by position, and an unset prior may have another
        # shape). Runs that do not train get the priors from the checkpoint.
        if self._trains(runner):
            self._set_model_counts(runner)

    def before_train(self, runner) -> None:
        counts = self._get_counts(runner)
        # Again after a checkpoint was loaded (load_from, resume): the
        # configured counts win over the checkpoint's.
        self._set_model_counts(runner)
        val_loop = runner.val_loop  # built by Runner.train, or None
        if val_loop is not None:
            for metric in self._metric_targets(val_loop.evaluator):
                metric.set_class_counts(counts)

    def _before_eval(self, runner, loop):
        metrics = list(self._metric_targets(loop.evaluator))
        if not metrics:  # the model's priors come back with the checkpoint
            return
        try:
            # Known since before_train when the run trains.
            counts = self._get_counts(runner, training=False)
        except ValueError as err:  # no train set in a test-only config
            if runner.cfg.get('train_dataloader') is None:
                runner.logger.warning(
                    'ClassCountsHook: no training set in the config, so '
                    'metrics keep their own class_counts (%s)', err)
                return
            raise
        for metric in metrics:
            metric.set_class_counts(counts)

    def before_val(self, runner) -> None:
        self._before_eval(runner, runner.val_loop)

    def before_test(self, runner) -> None:
        self._before_eval(runner, runner.test_loop)
