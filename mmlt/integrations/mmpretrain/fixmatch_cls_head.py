"""FixMatch on long-tailed data, with ProCo fed by confident pseudo-labels."""
from typing import Optional, Tuple

import torch
import torch.distributed as torch_dist
import torch.nn as nn

from mmlt.engine.protocols import HasPseudoLabelStats
from mmlt.models.losses import LogitAdjustLoss, ProCoLoss
from mmlt.models.utils.dist_utils import is_distributed
from mmlt.models.utils.unlabeled_prior import SOURCES, UnlabeledPrior
from mmlt.registry import MODELS
from mmlt.utils.class_groups import GROUP_NAMES, split_classes_by_count
from mmlt.utils.validation import check_int, check_number
from .contrastive_cls_head import ContrastiveClsHead


@MODELS.register_module()
class FixMatchClsHead(ContrastiveClsHead, HasPseudoLabelStats):
    """:class:`ContrastiveClsHead` for batches of labeled and unlabeled samples.

    FixMatch (Sohn et al., NeurIPS 2020) with a long-tailed classifier loss
    and, optionally, ProCo (Du et al., TPAMI 2024) whose vMF estimates also
    take the confident pseudo-labels. A batch holds ``L`` labeled samples
    (with ``gt_label``) and ``U`` unlabeled ones (without; mu = U / L from
    :class:`mmlt.MultiSourceSampler`), each with a weak and a strong view,
    stacked view-major (rows ``[0, N)`` weak, ``[N, 2N)`` strong,
    ``N = L + U``)::

        loss_cls        = loss(fc(weak_l), y)                 # LA or CE
        q               = softmax(fc(weak_u) + a)             # no grad
        y_hat, m        = argmax q, [max q >= threshold]
        loss_unlabeled  = lambda_u * sum_u m_u * CE(fc(strong_u) + a, y_hat_u) / U
        loss_contrast   = ProCo(both views of all N samples,
                                labels (y, y_hat), weights (1, m))

    So the ProCo estimator is updated with the labeled features and labels
    and with the confident unlabeled features and their pseudo-labels
    (weight 0 for the others: a step without a confident pseudo-label
    updates it with labeled data only), and its loss covers both. All of it
    stays on the device (no host read of the mask).

    ``a`` is the logit adjustment for the unlabeled data's class distribution
    ``pi_u`` (:class:`~mmlt.models.utils.unlabeled_prior.UnlabeledPrior`,
    ``docs/semi_supervised.md``): ``-tau_pl log pi_l`` by default
    (``pseudo_label_tau``, 0 unless set; ``CE`` sees no ``a`` then), the
    running estimate's ``log pi_u`` (``unlabeled_prior=dict(mode=
    'estimated')``, DebiasPL-style) or ACR's adaptive tau (``mode=
    'adaptive'``), both corrected for the labeled loss's own adjustment.
    The running estimates of ``pi_u`` are kept in every mode (EMAs of the
    mean of ``q``, of the kept pseudo-labels' histogram, of the balanced
    classifier's confident predictions, ACR's estimate, and of its mean
    prediction, summed over processes) and logged each epoch by :class:`mmlt.SemiSupervisedHook`
    against the true unlabeled distribution.

    The log shows, from the unlabeled samples' kept-aside ``true_label``
    (never used in a loss), the share of pseudo-labels kept
    (``pl_mask_rate``) and the accuracy of the kept ones (``pl_acc``), over
    all classes and per many/medium/few group of the labeled counts (by true
    class), accumulated since the epoch began (:class:`mmlt.SemiSupervisedHook`
    resets them and logs an epoch summary), summed over all processes.

    Args:
        threshold (float): Confidence a pseudo-label needs, in (0, 1].
            Defaults to 0.95 (FixMatch).
        unlabeled_loss (dict): Loss of the strong views against the
            pseudo-labels. Defaults to cross-entropy (FixMatch).
        unlabeled_weight (float): lambda_u. Defaults to 1.0.
        pseudo_label_tau (float): Debias the pseudo-labels: predict with
            ``logits - tau * log prior`` on the weak view (logit adjustment
            applied post hoc; Menon et al., ICLR 2021). Defaults to 0 (the
            classifier's own prediction).
        unlabeled_prior (dict, optional): Arguments of
            :class:`~mmlt.models.utils.unlabeled_prior.UnlabeledPrior`
            (``mode``, ``source``, ``momentum``, ``tau_max``,
            ``warmup_epochs``). Defaults to
            None: ``mode='none'``, the estimates are only logged.
        adjust_unlabeled_loss (bool): With ``mode`` ``'estimated'`` or
            ``'adaptive'``, add ``a`` to the strong views' logits in the
            unlabeled loss too (logit-adjusted loss for the unlabeled
            stream, so the classifier stays balanced). Defaults to True.
        contrast_pseudo_labels (bool): Give the confident pseudo-labeled
            samples to the contrastive loss and its estimator; False keeps
            ProCo on labeled samples only. Defaults to True.
        contrast_warmup_epochs (int): With ``contrast_pseudo_labels``, the
            pseudo-labels join ProCo only after this many epochs (early
            pseudo-labels are often wrong, and ProCo's estimator keeps
            them). Defaults to 0.
        many_threshold (int), few_threshold (int): Class groups of the logged
            pseudo-label statistics, as in :class:`mmlt.LongTailAccuracy`.
        **kwargs: Arguments of :class:`ContrastiveClsHead` (``loss`` is the
            labeled loss; ``contrast_loss`` must be ``mmlt.ProCoLoss`` or
            None).

    Shape:
        - feats[-1]: ``(2N, in_channels)``, view-major.
    """

    def __init__(self,
                 *args,
                 threshold: float = 0.95,
                 unlabeled_loss: dict = dict(
                     type='mmpretrain.CrossEntropyLoss', loss_weight=1.0),
                 unlabeled_weight: float = 1.0,
                 pseudo_label_tau: float = 0.0,
                 unlabeled_prior: Optional[dict] = None,
                 adjust_unlabeled_loss: bool = True,
                 contrast_pseudo_labels: bool = True,
                 contrast_warmup_epochs: int = 0,
                 many_threshold: int = 100,
                 few_threshold: int = 20,
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if not 0 < threshold <= 1:
            raise ValueError(
                f'threshold must be in (0, 1] (the confidence a pseudo-label '
                f'needs; FixMatch uses 0.95), got {threshold!r}')
        if self.loss_module is None:
            raise ValueError('FixMatchClsHead needs a classifier loss (loss=)')
        if self.contrast_branch is not None and not isinstance(
                self.contrast_branch.loss, ProCoLoss):
            raise ValueError(
                f'contrast_loss must be mmlt.ProCoLoss or None, got '
                f'{type(self.contrast_branch.loss).__name__}: only ProCo '
                'takes per-sample weights for its anchors and statistics')
        self.threshold = float(threshold)
        self.unlabeled_loss = unlabeled_loss if isinstance(
            unlabeled_loss, nn.Module) else MODELS.build(unlabeled_loss)
        self.unlabeled_weight = check_number(
            'unlabeled_weight', unlabeled_weight, minimum=0)
        self.pseudo_label_tau = float(pseudo_label_tau)
        self.unlabeled_prior = UnlabeledPrior(self.num_classes,
                                              **(unlabeled_prior or {}))
        self.adjust_unlabeled_loss = bool(adjust_unlabeled_loss)
        self.labeled_tau = self._labeled_tau()
        self.contrast_pseudo_labels = bool(contrast_pseudo_labels)
        self.contrast_warmup_epochs = check_int(
            'contrast_warmup_epochs', contrast_warmup_epochs, minimum=0)
        self.many_threshold = many_threshold
        self.few_threshold = few_threshold
        # Per true class: unlabeled samples seen, pseudo-labels kept, kept
        # and correct (since the epoch began; in checkpoints, so a resumed
        # epoch goes on counting).
        self.register_buffer(
            'pseudo_label_counts',
            torch.zeros(3, self.num_classes, dtype=torch.float64))
        # Group (0 many, 1 medium, 2 few) of every class by labeled count.
        self.register_buffer(
            'class_group', torch.zeros(self.num_classes, dtype=torch.long))

    def _labeled_tau(self) -> float:
        """The strength of the labeled loss's logit adjustment (0 for plain
        cross-entropy), which :class:`UnlabeledPrior` corrects for."""
        if isinstance(self.loss_module, LogitAdjustLoss):
            return self.loss_module.tau
        if type(self.loss_module).__name__ == 'CrossEntropyLoss':
            return 0.0
        if self.unlabeled_prior.mode != 'none':
            raise ValueError(
                f'unlabeled_prior mode {self.unlabeled_prior.mode!r} needs to '
                'know how the labeled loss biases the logits: use '
                'mmpretrain.CrossEntropyLoss or mmlt.LogitAdjustLoss as loss, '
                f'got {type(self.loss_module).__name__}')
        return 0.0

    def _unlabeled_adjustment(self) -> Optional[torch.Tensor]:
        """``a`` (see the class), ``(C,)`` float64, or None."""
        if self.unlabeled_prior.mode != 'none':
            if not self.prior_is_set:
                raise RuntimeError(
                    f'unlabeled_prior mode {self.unlabeled_prior.mode!r} needs '
                    'the class prior: add mmlt.ClassCountsHook to the config')
            return self.unlabeled_prior.adjustment(self.log_prior,
                                                   self.labeled_tau)
        if self.pseudo_label_tau:
            if not self.prior_is_set:
                raise RuntimeError(
                    f'pseudo_label_tau={self.pseudo_label_tau} needs the '
                    'class prior: add mmlt.ClassCountsHook to the config')
            return -self.pseudo_label_tau * self.log_prior
        return None

    def end_of_epoch(self) -> None:
        """Counts the epoch and sets ACR's tau for the next one
        (``mode='adaptive'``); called by :class:`mmlt.SemiSupervisedHook` on
        every rank."""
        self.unlabeled_prior.end_of_epoch(self.log_prior.exp())

    @torch.no_grad()
    def unlabeled_prior_stats(self) -> dict:
        """Host numbers for the epoch log and plot: distances of both
        estimates to the true unlabeled distribution of the epoch's stream
        (from ``true_label``), ACR's tau, and the distributions."""
        prior = self.unlabeled_prior
        true_counts = self.pseudo_label_counts[0]
        stats = prior.distances(true_counts) if float(
            true_counts.sum()) > 0 else {}
        if prior.mode == 'adaptive':
            stats['pi_u_adaptive_tau'] = float(prior.adaptive_tau)
        stats['distributions'] = dict(
            true=(true_counts / true_counts.sum().clamp(min=1)).tolist(),
            **{source: prior.estimate(source).tolist()
               for source in SOURCES})
        return stats

    def set_class_counts(self, class_counts) -> None:
        """The prior (see :class:`ContrastiveClsHead`) and the class groups
        of the pseudo-label statistics."""
        super().set_class_counts(class_counts)
        groups = split_classes_by_count(
            torch.as_tensor(class_counts).tolist(), self.many_threshold,
            self.few_threshold)
        self.class_group.copy_(
            torch.as_tensor([GROUP_NAMES.index(g) for g in groups]))

    def reset_pseudo_label_counts(self) -> None:
        self.pseudo_label_counts.zero_()

    @torch.no_grad()
    def pseudo_label_stats(self) -> dict:
        """Mask rate and accuracy of the kept pseudo-labels, overall and per
        group, as device tensors (in %)."""
        counts = self.pseudo_label_counts  # (3, C): seen, kept, correct
        per_group = counts.new_zeros(3, len(GROUP_NAMES)).index_add_(
            1, self.class_group, counts)
        stats = {}
        for suffix, (seen, kept, correct) in [('', counts.sum(dim=1))] + [
                (f'_{name}', per_group[:, g])
                for g, name in enumerate(GROUP_NAMES)
        ]:
            stats[f'pl_mask_rate{suffix}'] = (
                100 * kept / seen.clamp(min=1)).float()
            stats[f'pl_acc{suffix}'] = (100 * correct /
                                        kept.clamp(min=1)).float()
        return stats

    def loss(self, feats: Tuple[torch.Tensor], data_samples, **kwargs) -> dict:
        """The classifier loss of the labeled weak views, the unlabeled loss
        of the strong views against the weak views' pseudo-labels and, with
        a contrast branch, ProCo over all samples (see the class)."""
        x = self.pre_logits(feats)
        labeled, unlabeled = self._split_batch(x, data_samples)
        num = len(data_samples)
        device = x.device
        lab_idx = torch.as_tensor(labeled, device=device)
        unl_idx = torch.as_tensor(unlabeled, device=device)
        weak, strong = x[:num], x[num:]
        labeled_samples = [data_samples[i] for i in labeled]
        labels = torch.cat([ds.gt_label.reshape(-1)
                            for ds in labeled_samples]).to(device)

        losses = dict()
        cls_score = self.fc(weak.index_select(0, lab_idx))
        losses['loss_cls'] = self._get_loss(cls_score, labeled_samples,
                                            **kwargs)['loss']
        losses.update(self._topk_accuracy(cls_score, labels))

        adjustment = self._unlabeled_adjustment()
        pseudo_labels, mask, probs, balanced = self._pseudo_labels(
            weak, unl_idx, adjustment)
        strong_score = self.fc(strong.index_select(0, unl_idx))
        if adjustment is not None and self.adjust_unlabeled_loss and \
                self.unlabeled_prior.mode != 'none':
            strong_score = strong_score + adjustment.to(strong_score.dtype)
        losses['loss_unlabeled'] = self.unlabeled_weight * self.unlabeled_loss(
            strong_score,
            pseudo_labels,
            weight=mask,
            avg_factor=max(len(unlabeled), 1))

        self._count_pseudo_labels([data_samples[i] for i in unlabeled],
                                  pseudo_labels, mask, probs, balanced)
        losses.update(self.pseudo_label_stats())

        if self.contrast_branch is not None:
            losses['loss_contrast'] = self._contrast_loss(
                x, lab_idx, labels, unl_idx, pseudo_labels, mask)
        return losses

    @staticmethod
    def _split_batch(x: torch.Tensor, data_samples) -> Tuple[list, list]:
        """Indices of the labeled and of the unlabeled samples, after
        checking that there are two views of each and some labeled ones."""
        num = len(data_samples)
        if num == 0 or x.size(0) != 2 * num:
            raise ValueError(
                f'{x.size(0)} feature rows for {num} data samples: FixMatch '
                'needs a weak and a strong view of every sample (MultiView '
                'with num_views=[1, 1] in both pipelines)')
        labeled = [i for i, ds in enumerate(data_samples) if 'gt_label' in ds]
        unlabeled = [
            i for i, ds in enumerate(data_samples) if 'gt_label' not in ds
        ]
        if not labeled:
            raise ValueError(
                'a batch without labeled samples: use mmlt.MultiSourceSampler '
                'with source_ratio=[1, mu] on mmlt.SemiSupervisedDataset')
        return labeled, unlabeled

    @torch.no_grad()
    def _pseudo_labels(self, weak: torch.Tensor, unl_idx: torch.Tensor,
                       adjustment: Optional[torch.Tensor]):
        """FixMatch's pseudo-labels of the unlabeled weak views, their mask
        (1.0 where the confidence reaches ``threshold``), the pseudo-label
        distributions ``q`` ``(U, C)`` and the balanced classifier's
        confident predictions and posteriors ``(2, U, C)`` (the first is
        ACR's estimate), no gradient."""
        raw = self.fc(weak.index_select(0, unl_idx)).float()
        weak_logits = raw if adjustment is None else raw + adjustment.to(raw)
        probs = weak_logits.softmax(dim=1)
        confidence, pseudo_labels = probs.max(dim=1)
        mask = (confidence >= self.threshold).float()
        return pseudo_labels, mask, probs, self._balanced_predictions(raw)

    def _balanced_predictions(self, logits: torch.Tensor) -> torch.Tensor:
        """The classifier under a uniform prior (its logits less
        ``(1 - labeled_tau) log pi_l``, the labeled prior its loss leaves in
        them): its one-hot confident predictions and its posteriors, stacked
        ``(2, U, C)``."""
        if self.prior_is_set and self.labeled_tau != 1:
            logits = logits - (1 - self.labeled_tau) * self.log_prior.to(
                logits)
        probs = logits.softmax(dim=1)
        confidence, labels = probs.max(dim=1)
        kept = torch.zeros_like(logits).scatter_(
            1, labels[:, None],
            (confidence >= self.threshold).to(logits)[:, None])
        return torch.stack([kept, probs])

    def _contrast_loss(self, x: torch.Tensor, lab_idx: torch.Tensor,
                       labels: torch.Tensor, unl_idx: torch.Tensor,
                       pseudo_labels: torch.Tensor,
                       mask: torch.Tensor) -> torch.Tensor:
        """ProCo over both views of all samples: labeled ones with weight 1,
        unlabeled ones with their pseudo-label and mask (weight 0 without
        ``contrast_pseudo_labels`` or during ``contrast_warmup_epochs``)."""
        num = x.size(0) // 2
        device = x.device
        all_labels = torch.zeros(num, dtype=torch.long, device=device)
        all_labels[lab_idx] = labels.long()
        all_labels[unl_idx] = pseudo_labels
        weight = torch.ones(num, device=device)
        if self.contrast_pseudo_labels:
            after_warmup = self.unlabeled_prior.epochs_done >= \
                self.contrast_warmup_epochs
            weight[unl_idx] = mask * after_warmup.to(mask)
        else:
            weight[unl_idx] = 0.0
        return self.contrast_branch(
            x,
            all_labels,
            2,
            self.fc.weight,
            weight=weight,
            avg_factor=weight.sum())

    @torch.no_grad()
    def _count_pseudo_labels(self, unlabeled_samples, pseudo_labels: torch.Tensor,
                             mask: torch.Tensor, probs: torch.Tensor,
                             balanced: torch.Tensor) -> None:
        """Add the batch to the per-class counts (if true labels exist) and
        to the running estimates of ``pi_u``.

        Under DDP the batch's sums are summed over the processes (one
        ``(7, C)`` all-reduce, no host sync), so every rank holds the counts
        and estimates of the whole stream: the logged rates and the
        checkpoint are those of all GPUs, not of rank 0's share. Every rank
        calls this each step.
        """
        counts = self.pseudo_label_counts
        batch = counts.new_zeros(7, counts.size(1))
        batch[3] = probs.sum(dim=0)
        batch[4].index_add_(0, pseudo_labels, mask.to(counts.dtype))
        batch[5:7] = balanced.sum(dim=1)
        if unlabeled_samples and all('true_label' in ds
                                     for ds in unlabeled_samples):
            true = torch.as_tensor(
                [int(ds.true_label) for ds in unlabeled_samples],
                device=mask.device)
            mask = mask.to(counts.dtype)
            batch[0].index_add_(0, true, torch.ones_like(mask))
            batch[1].index_add_(0, true, mask)
            batch[2].index_add_(
                0, true, mask * (pseudo_labels == true).to(counts.dtype))
        if is_distributed():
            torch_dist.all_reduce(batch, op=torch_dist.ReduceOp.SUM)
        counts.add_(batch[:3])
        self.unlabeled_prior.update(batch[3], batch[4], batch[5], batch[6])
