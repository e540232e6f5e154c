"""Hand the training set's per-class counts to every module that needs them."""
from typing import Optional, Sequence

import numpy as np
from mmengine.hooks import Hook

from mmlt.datasets import lt_base
from mmlt.registry import HOOKS
from mmlt.datasets.stream_counts import loader_sampler, stream_class_counts
from mmlt.utils.validation import check_choice, check_number


@HOOKS.register_module()
class ClassCountsHook(Hook):
    """Set the training set's class counts on losses, heads and metrics.

    Before training (and before validation/testing when a training set is
    configured) every module of the model, and every metric, that has a
    ``set_class_counts(counts)`` method receives the per-class training
    counts. They are kept in the modules' buffers, so a checkpoint carries
    them and a resumed run uses the same prior. Targets are found by protocol,
    not by a path, so the hook works with any model and wrapper.

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

    def _prior_counts(self, runner) -> np.ndarray:
        """Counts for the model's priors (``prior`` plus the pseudo-count)."""
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
            return counts + self.pseudo_count
        return counts

    def _get_counts(self, runner):
        if self.class_counts is not None:
            return self.class_counts
        if self._counts is None:
            self._counts = lt_base.class_counts(self._train_dataset(runner))
        return self._counts

    @staticmethod
    def _train_dataset(runner):
        from mmengine.runner.loops import BaseLoop
        if isinstance(runner._train_loop, BaseLoop):
            return runner.train_loop.dataloader.dataset
        loader = runner._train_dataloader
        if loader is None:
            raise ValueError('no train_dataloader in the config')
        if isinstance(loader, dict):  # test-only run: build just the dataset
            from mmengine.registry import DATASETS
            dataset = loader['dataset']
            return DATASETS.build(dataset) if isinstance(dataset,
                                                         dict) else dataset
        return loader.dataset

    @staticmethod
    def _targets(runner):
        model = runner.model
        models = [getattr(model, 'module', model)]
        # MMEngine's EMAHook copies the model before training starts: its
        # copy needs the counts too (it syncs buffers by position, and an
        # unset prior has another shape).
        for hook in getattr(runner, 'hooks', ()):
            ema_model = getattr(hook, 'ema_model', None)
            if ema_model is not None:
                models.append(getattr(ema_model, 'module', ema_model))
        for model in models:
            for module in model.modules():
                if callable(getattr(module, 'set_class_counts', None)):
                    yield module

    @staticmethod
    def _metric_targets(evaluator):
        for metric in getattr(evaluator, 'metrics', []) or []:
            if callable(getattr(metric, 'set_class_counts', None)):
                yield metric

    def before_train(self, runner) -> None:
        counts = self._get_counts(runner)
        modules = list(self._targets(runner))
        if modules:
            prior_counts = self._prior_counts(runner)
            empty = np.flatnonzero(np.asarray(prior_counts) <= 0)
            if empty.size:
                raise ValueError(
                    f'ClassCountsHook: classes {empty.tolist()} have no '
                    f'training samples in the {self.prior!r} counts, so their '
                    'log prior would be log(0) = -inf. Set '
                    "dict(type='mmlt.ClassCountsHook', pseudo_count=1) (the "
                    'metrics keep the true counts), or drop those classes '
                    'from the training set.')
        for module in modules:
            module.set_class_counts(prior_counts)
        val_loop = getattr(runner, '_val_loop', None)
        if val_loop is not None and hasattr(val_loop, 'evaluator'):
            for metric in self._metric_targets(val_loop.evaluator):
                metric.set_class_counts(counts)

    def _before_eval(self, runner, loop_name):
        loop = getattr(runner, loop_name, None)
        evaluator = getattr(loop, 'evaluator', None)
        metrics = list(self._metric_targets(evaluator))
        if not metrics:  # the model's priors come back with the checkpoint
            return
        try:
            counts = self._get_counts(runner)
        except ValueError as err:  # no train set in a test-only config
            if runner._train_dataloader is None:
                runner.logger.warning(
                    'ClassCountsHook: no training set in the config, so '
                    'metrics keep their own class_counts (%s)', err)
                return
            raise
        for metric in metrics:
            metric.set_class_counts(counts)

    @staticmethod
    def _set_metric_out_dirs(runner, loop_name):
        loop = getattr(runner, loop_name, None)
        for metric in getattr(getattr(loop, 'evaluator', None), 'metrics',
                              []) or []:
            if callable(getattr(metric, 'set_out_dir', None)):
                metric.set_out_dir(runner.work_dir)

    def before_val(self, runner) -> None:
        self._set_metric_out_dirs(runner, 'val_loop')
        self._before_eval(runner, 'val_loop')

    def before_test(self, runner) -> None:
        self._set_metric_out_dirs(runner, 'test_loop')
        self._before_eval(runner, 'test_loop')
