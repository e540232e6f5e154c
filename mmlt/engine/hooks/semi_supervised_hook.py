"""Checks and pseudo-label statistics of semi-supervised training."""
from mmengine.hooks import Hook

from mmlt.engine.protocols import HasPseudoLabelStats
from mmlt.registry import HOOKS


@HOOKS.register_module()
class SemiSupervisedHook(Hook):
    """Check a semi-supervised run before it starts; report pseudo-labels.

    Before training: the training dataloader's ``batch_size`` must be its
    :class:`mmlt.MultiSourceSampler`'s (otherwise batches would not hold B
    labeled and mu * B unlabeled samples) and the model needs a head with
    pseudo-label statistics (a module declaring
    :class:`~mmlt.engine.protocols.HasPseudoLabelStats`, such as
    :class:`mmlt.FixMatchClsHead`).

    Each epoch: the head's pseudo-label counts restart (not when a run
    resumes inside the epoch: they are in the checkpoint) and, at the end,
    one log line gives the epoch's mask rate and the accuracy of the kept
    pseudo-labels, overall and per many/medium/few group (from the unlabeled
    samples' kept-aside labels), which also go to the visualizer as
    ``pseudo_label/*`` scalars.
    """

    priority = 'NORMAL'

    def __init__(self) -> None:
        # Whether an epoch of this run has begun: only the first one can be
        # a resumed, part-done epoch.
        self._started = False

    @staticmethod
    def _heads(runner):
        model = getattr(runner.model, 'module', runner.model)
        return [
            m for m in model.modules()
            if isinstance(m, HasPseudoLabelStats)
        ]

    def before_train(self, runner) -> None:
        loader = runner.train_dataloader
        sampler = getattr(loader, 'sampler', None)
        sampler_batch = getattr(sampler, 'num_per_source', None) and getattr(
            sampler, 'batch_size', None)
        if sampler_batch is None:
            raise ValueError(
                f'semi-supervised training needs mmlt.MultiSourceSampler in '
                f'train_dataloader.sampler, got {type(sampler).__name__}')
        if loader.batch_size != sampler_batch:
            raise ValueError(
                f'train_dataloader.batch_size={loader.batch_size} but its '
                f'MultiSourceSampler has batch_size={sampler_batch}: set both '
                'to the same value (labeled + unlabeled samples per GPU)')
        if not self._heads(runner):
            raise ValueError(
                'SemiSupervisedHook found no head with pseudo-label '
                'statistics; use mmlt.FixMatchClsHead')

    def before_train_epoch(self, runner) -> None:
        # The sampler's own epoch length, not the loader's: a resumed epoch's
        # loader may be shorter (the part already trained is skipped).
        # Only the first epoch of a run can be a resumed, part-done one
        # (later epochs always start fresh, whatever the world size was).
        first, self._started = not self._started, True
        epoch_length = runner.train_dataloader.sampler.num_batches
        if first and runner.iter != runner.epoch * epoch_length:
            return  # resumed inside this epoch: keep its counts
        for head in self._heads(runner):
            head.reset_pseudo_label_counts()

    def after_train_epoch(self, runner) -> None:
        for head in self._heads(runner):
            stats = {k: float(v) for k, v in head.pseudo_label_stats().items()}
            groups = ('many', 'medium', 'few')
            runner.logger.info(
                f'Pseudo-labels of epoch {runner.epoch + 1}: kept '
                f'{stats["pl_mask_rate"]:.1f}% (' + ' / '.join(
                    f'{g} {stats["pl_mask_rate_" + g]:.1f}'
                    for g in groups) + '), accuracy of the kept '
                f'{stats["pl_acc"]:.1f}% (' + ' / '.join(
                    f'{g} {stats["pl_acc_" + g]:.1f}' for g in groups) + ')')
            runner.visualizer.add_scalars(
                {f'pseudo_label/{k}': v
                 for k, v in stats.items()}, step=runner.epoch)
