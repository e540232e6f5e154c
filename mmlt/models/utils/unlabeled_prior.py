"""The class distribution of unlabeled data, estimated during training.

Semi-supervised long-tailed training sees labeled data with a known prior
``pi_l`` and unlabeled data with an unknown one ``pi_u`` (consistent with
``pi_l``, uniform, reversed, ...). :class:`UnlabeledPrior` keeps four running
estimates of ``pi_u`` and turns them into the logit adjustment of
pseudo-labels and of the unlabeled loss (``docs/semi_supervised.md``):

* ``mean_prediction``: an EMA of the mean pseudo-label distribution ``q`` over
  all unlabeled samples. When ``q`` is the posterior under the current
  estimate (``estimated`` mode), this is the EM update of a prior under label
  shift (Saerens et al., Neural Computation 2002), whose fixed point is the
  maximum-likelihood ``pi_u``;
* ``histogram``: an EMA of the histogram of the kept (mask-weighted)
  pseudo-labels, what FixMatch actually trains on (DebiasPL, Wang et al.,
  CVPR 2022, adjusts by an EMA of the model's predictions);
* ``balanced_histogram``: an EMA of the histogram of the pseudo-labels the
  *balanced* classifier (its logits under a uniform prior, whatever the
  current adjustment) predicts with confidence, ACR's estimate: it does not
  depend on the adjustment it sets, but leans to the classes predicted with
  confidence (docs/semi_supervised.md);
* ``balanced_mean``: an EMA of the balanced classifier's mean prediction
  over all unlabeled samples: like ``balanced_histogram`` it does not depend
  on the adjustment it sets, and it keeps the unconfident predictions too.

``adaptive`` mode follows ACR (Wei and Gan, CVPR 2023): once per epoch the
estimate (``source``; ACR's own is ``balanced_histogram``) is compared with
three anchors (``pi_l``, uniform and ``pi_l`` reversed by rank) by
symmetric KL divergence, and
``tau = tau_max * softmax(KL)[consistent]`` in ``[0, tau_max]`` sets an
adjustment ``-tau log pi_l`` of the classifier's cross-entropy-equivalent
logits (0 when ``pi_u`` looks like ``pi_l``, about 2 when reversed).
ACR first trains for a warm-up with ``tau`` held at its start
(``warmup_epochs``; ACR's code counts it as a share of the iterations),
while the estimate already runs.
"""
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn as nn

from mmlt.utils.validation import check_choice, check_int, check_number

MODES = ('none', 'estimated', 'adaptive')
SOURCES = ('mean_prediction', 'histogram', 'balanced_histogram',
           'balanced_mean')


def reversed_by_rank(prior: torch.Tensor) -> torch.Tensor:
    """``prior``'s values assigned in reverse rank order: the most frequent
    class gets the smallest value (a 'reversed' unlabeled profile)."""
    order = torch.argsort(prior, descending=True, stable=True)
    out = torch.empty_like(prior)
    out[order] = prior[order].flip(0)
    return out


def symmetric_kl(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """``KL(p || q) + KL(q || p)`` of distributions on the last axis."""
    log_ratio = p.log() - q.log()
    return ((p - q) * log_ratio).sum(-1)


def acr_tau(estimate: torch.Tensor, labeled_prior: torch.Tensor,
            tau_max: float = 2.0) -> torch.Tensor:
    """ACR's ``tau = tau_max * softmax(d)[consistent]`` (a scalar tensor),
    ``d`` the symmetric KL divergences of ``estimate`` to the anchors
    ``pi_l``, uniform and ``pi_l`` reversed by rank (all ``(C,)``)."""
    anchors = torch.stack([
        labeled_prior,
        torch.full_like(labeled_prior, 1 / labeled_prior.numel()),
        reversed_by_rank(labeled_prior)
    ])
    distances = symmetric_kl(estimate.to(anchors)[None], anchors)
    return tau_max * distances.softmax(0)[0]


class UnlabeledPrior(nn.Module):
    """Running estimates of ``pi_u`` and the logit adjustment they give.

    All state is in buffers (checkpointed, so a resumed run is exact):
    ``mean_prediction``, ``histogram``, ``balanced_histogram`` and
    ``balanced_mean`` ``(C,)`` float64, starting uniform, ``adaptive_tau``
    (a scalar, starting at 1) and ``epochs_done`` (int64, the epochs ended).
    :meth:`update` takes sums that are already summed over processes, so
    every rank holds the same estimates.

    Args:
        num_classes (int): ``C``.
        mode (str): ``'none'`` (no adjustment), ``'estimated'`` (by the
            running estimate) or ``'adaptive'`` (ACR's tau). Defaults to
            ``'none'``.
        source (str): The estimate ``estimated`` and ``adaptive`` use:
            ``'mean_prediction'``, ``'histogram'``,
            ``'balanced_histogram'`` (ACR's) or ``'balanced_mean'``. Defaults to
            ``'mean_prediction'``.
        momentum (float): EMA momentum per step, in [0, 1). Defaults to 0.99.
        tau_max (float): Upper end of ACR's tau. Defaults to 2.
        warmup_epochs (int): ``'adaptive'`` only: epochs whose estimate
            does not set ``tau``; it stays at its start (1) until epoch
            ``warmup_epochs + 1`` ends. Defaults to 0 (set after every
            epoch, from the first on).
        floor (float): Smallest estimated probability (so ``log`` stays
            finite for a class never predicted). Defaults to 1e-6.
    """

    def __init__(self,
                 num_classes: int,
                 mode: str = 'none',
                 source: str = 'mean_prediction',
                 momentum: float = 0.99,
                 tau_max: float = 2.0,
                 warmup_epochs: int = 0,
                 floor: float = 1e-6) -> None:
        super().__init__()
        self.mode = check_choice('mode', mode, MODES)
        self.source = check_choice('source', source, SOURCES)
        self.momentum = check_number('momentum', momentum, minimum=0)
        if self.momentum >= 1:
            raise ValueError(f'momentum must be below 1, got {momentum}')
        self.tau_max = check_number('tau_max', tau_max, minimum=0)
        self.floor = check_number('floor', floor, strictly_above=0)
        warmup_epochs = check_int('warmup_epochs', warmup_epochs, minimum=0)
        if warmup_epochs and self.mode != 'adaptive':
            raise ValueError(
                f'warmup_epochs={warmup_epochs} holds ACR\'s tau, so it needs '
                f"mode='adaptive' (got mode={self.mode!r}); remove it")
        self.warmup_epochs = warmup_epochs
        uniform = torch.full((num_classes, ), 1.0 / num_classes,
                             dtype=torch.float64)
        self.register_buffer('mean_prediction', uniform.clone())
        self.register_buffer('histogram', uniform.clone())
        self.register_buffer('balanced_histogram', uniform.clone())
        self.register_buffer('balanced_mean', uniform.clone())
        self.register_buffer('adaptive_tau',
                             torch.tensor(1.0, dtype=torch.float64))
        self.register_buffer('epochs_done', torch.tensor(0))

    def estimate(self, source: Optional[str] = None) -> torch.Tensor:
        """The estimate of ``pi_u`` ``(C,)`` float64, floored and
        normalised."""
        value = getattr(self, source or self.source).clamp(min=self.floor)
        return value / value.sum()

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # checkpoints written before these estimates existed: uniform; and
        # before the epoch count: 0 (a warm-up would start again)
        if prefix + 'histogram' in state_dict:
            state_dict.setdefault(prefix + 'epochs_done',
                                  torch.zeros_like(self.epochs_done))
            for name in ('balanced_histogram', 'balanced_mean'):
                buffer = getattr(self, name)
                state_dict.setdefault(prefix + name,
                                      torch.full_like(buffer,
                                                      1 / buffer.numel()))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @torch.no_grad()
    def update(self, probability_sum: torch.Tensor,
               kept_histogram: torch.Tensor,
               balanced_histogram: Optional[torch.Tensor] = None,
               balanced_probability_sum: Optional[torch.Tensor] = None
               ) -> None:
        """One EMA step from a batch's sums (over all processes).

        Args:
            probability_sum (Tensor): ``sum_u q_u`` ``(C,)`` over the
                unlabeled samples.
            kept_histogram (Tensor): ``sum_u m_u onehot(y_hat_u)`` ``(C,)``.
            balanced_histogram (Tensor, optional): The same for the
                balanced classifier's confident predictions ``(C,)``; None
                leaves that estimate unchanged.
            balanced_probability_sum (Tensor, optional): The balanced
                classifier's ``sum_u p_bal(. | x_u)`` ``(C,)``; None leaves
                that estimate unchanged.
        A sum of zero (no unlabeled or no kept sample) leaves that estimate
        unchanged; nothing is read on the host.
        """
        for name, batch in (('mean_prediction', probability_sum),
                            ('histogram', kept_histogram),
                            ('balanced_histogram', balanced_histogram),
                            ('balanced_mean', balanced_probability_sum)):
            if batch is None:
                continue
            current = getattr(self, name)
            batch = batch.to(current)
            total = batch.sum()
            share = torch.where(total > 0, batch / total.clamp(min=1e-300),
                                current)
            current.mul_(self.momentum).add_(share, alpha=1 - self.momentum)

    @torch.no_grad()
    def end_of_epoch(self, labeled_prior: torch.Tensor) -> None:
        """Count the epoch; in ``'adaptive'`` mode, once the warm-up is
        over, ACR's tau for the next epoch from the estimate and the three
        anchors. Nothing is read on the host."""
        self.epochs_done.add_(1)
        if self.mode != 'adaptive':
            return
        tau = acr_tau(self.estimate(), labeled_prior.to(self.adaptive_tau),
                      self.tau_max)
        self.adaptive_tau.copy_(
            torch.where(self.epochs_done > self.warmup_epochs, tau,
                        self.adaptive_tau))

    def adjustment(self, log_labeled_prior: torch.Tensor,
                   labeled_tau: float) -> Optional[torch.Tensor]:
        """What to add to the classifier's logits to get the unlabeled
        data's posterior (``(C,)`` float64), or None in ``'none'`` mode.

        The classifier is trained with logit adjustment of strength
        ``labeled_tau`` on the labeled data (0: plain cross-entropy), so its
        logits are ``log p_bal + (1 - labeled_tau) log pi_l`` up to a
        constant; the unlabeled posterior is ``log p_bal + log pi_u``.
        """
        if self.mode == 'none':
            return None
        log_labeled_prior = log_labeled_prior.to(self.adaptive_tau)
        if self.mode == 'estimated':
            return self.estimate().log() - (1 -
                                            labeled_tau) * log_labeled_prior
        # ACR: its tau adjusts the cross-entropy-equivalent logits.
        return (labeled_tau - self.adaptive_tau) * log_labeled_prior

    @torch.no_grad()
    def distances(self, true_counts: torch.Tensor) -> Dict[str, float]:
        """Total variation and ``KL(true || estimate)`` of every estimate to
        the true unlabeled distribution (host floats, for the epoch log)."""
        true = true_counts.to(self.adaptive_tau)
        true = true / true.sum().clamp(min=1e-300)
        out = {}
        for source in SOURCES:
            estimate = self.estimate(source)
            out[f'pi_u_tv_{source}'] = float(0.5 *
                                             (estimate - true).abs().sum())
            terms = torch.where(true > 0, true * (true.clamp(min=1e-300).log()
                                                 - estimate.log()), 0.0)
            out[f'pi_u_kl_{source}'] = float(terms.sum())
        return out


@torch.no_grad()
def adaptive_tau_map(logits: torch.Tensor,
                     log_labeled_prior: torch.Tensor,
                     labeled_tau: float,
                     taus,
                     tau_max: float = 2.0) -> List[Tuple[float, torch.Tensor,
                                                         float]]:
    """What ACR's ``tau`` would become after an epoch at each adjustment.

    In ``'adaptive'`` mode the estimate is the mean pseudo-label
    distribution ``q`` under the current ``tau``, and the next ``tau``
    comes from that estimate, so ``tau`` settles where the map ``tau ->
    acr_tau(mean q(tau))`` crosses the identity. For each ``tau`` of
    ``taus``: the mean of ``softmax(logits + (labeled_tau - tau) log pi_l)``
    over the rows and the ``tau`` it gives.

    Args:
        logits (Tensor): The classifier's logits on unlabeled data ``(N, C)``.
        log_labeled_prior (Tensor): ``log pi_l`` ``(C,)``.
        labeled_tau (float): The labeled loss's logit-adjustment strength.
        taus (Iterable[float]): Adjustments to evaluate.
        tau_max (float): ACR's upper end. Defaults to 2.

    Returns:
        list[tuple[float, Tensor, float]]: ``(tau, estimate (C,), next tau)``.
    """
    prior = UnlabeledPrior(logits.shape[1], mode='adaptive', tau_max=tau_max)
    logits = logits.to(torch.float64)
    rows = []
    for tau in taus:
        prior.adaptive_tau.fill_(tau)
        adjustment = prior.adjustment(log_labeled_prior, labeled_tau)
        estimate = (logits + adjustment.to(logits)).softmax(1).mean(0)
        rows.append((float(tau), estimate,
                     float(acr_tau(estimate, log_labeled_prior.exp(),
                                   tau_max))))
    return rows
