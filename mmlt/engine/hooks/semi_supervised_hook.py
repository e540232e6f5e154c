"""Checks and pseudo-label statistics of semi-supervised training."""
import os.path as osp

from mmengine.dist import is_main_process
from mmengine.hooks import Hook

from mmlt.engine.protocols import HasPseudoLabelStats
from mmlt.evaluation.pseudo_label_plot import plot_pseudo_labels
from mmlt.registry import HOOKS

#: message hub key of the per-epoch history (saved in checkpoints)
HISTORY_KEY = 'mmlt_pseudo_label_history'


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
    ``pseudo_label/*`` scalars; a second line gives how far the head's
    running estimates of the unlabeled class distribution are from the true
    one of the epoch (total variation and KL divergence, and ACR's tau where
    used), and ``{work_dir}/pseudo_labels/epoch_{k}.png`` plots the mask
    rate and accuracy per epoch so far and the estimated against the true
    distribution (the history is in the checkpoint's message hub, so a
    resumed run's plot goes on). Then each head's ``end_of_epoch`` runs.
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
        for index, head in enumerate(self._heads(runner)):
            stats = {k: float(v) for k, v in head.pseudo_label_stats().items()}
            prior_stats = head.unlabeled_prior_stats()
            distributions = prior_stats.pop('distributions', None)
            self._log(runner, stats, prior_stats)
            runner.visualizer.add_scalars(
                {f'pseudo_label/{k}': v
                 for k, v in {**stats, **prior_stats}.items()},
                step=runner.epoch)
            if index == 0 and distributions is not None:
                self._plot(runner, stats, distributions)
            head.end_of_epoch()

    @staticmethod
    def _log(runner, stats: dict, prior_stats: dict) -> None:
        groups = ('many', 'medium', 'few')
        runner.logger.info(
            f'Pseudo-labels of epoch {runner.epoch + 1}: kept '
            f'{stats["pl_mask_rate"]:.1f}% (' + ' / '.join(
                f'{g} {stats["pl_mask_rate_" + g]:.1f}'
                for g in groups) + '), accuracy of the kept '
            f'{stats["pl_acc"]:.1f}% (' + ' / '.join(
                f'{g} {stats["pl_acc_" + g]:.1f}' for g in groups) + ')')
        if 'pi_u_tv_mean_prediction' in prior_stats:
            line = ('Unlabeled class distribution, estimate vs true: total '
                    'variation {pi_u_tv_mean_prediction:.3f} (mean '
                    'prediction) / {pi_u_tv_histogram:.3f} (kept '
                    'pseudo-labels) / {pi_u_tv_balanced_histogram:.3f} '
                    '(balanced, kept) / {pi_u_tv_balanced_mean:.3f} '
                    '(balanced, mean), KL {pi_u_kl_mean_prediction:.3f} / '
                    '{pi_u_kl_histogram:.3f} / '
                    '{pi_u_kl_balanced_histogram:.3f} / '
                    '{pi_u_kl_balanced_mean:.3f}').format(**prior_stats)
            if 'pi_u_adaptive_tau' in prior_stats:
                line += f', ACR tau {prior_stats["pi_u_adaptive_tau"]:.3f}'
            runner.logger.info(line)

    @staticmethod
    def _plot(runner, stats: dict, distributions: dict) -> None:
        """Add the epoch to the history and draw it (main process)."""
        history = list(runner.message_hub.get_info(HISTORY_KEY, []))
        history.append(dict(stats, epoch=runner.epoch + 1,
                            distributions=distributions))
        runner.message_hub.update_info(HISTORY_KEY, history)
        if is_main_process():
            plot_pseudo_labels(
                history,
                osp.join(runner.work_dir, 'pseudo_labels',
                         f'epoch_{runner.epoch + 1}.png'))
