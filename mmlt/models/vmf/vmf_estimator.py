"""Online per-class von Mises-Fisher estimation for ProCo.

ProCo (Du et al., "Probabilistic Contrastive Learning for Long-Tailed Visual
Recognition", TPAMI 2024, arXiv 2403.06726) models the unit contrastive
features of class ``c`` as ``vMF(mu_c, kappa_c)`` on ``S^{p-1}`` and estimates
both parameters online from the training features. This module keeps the
sufficient statistics (per-class sums of unit features and counts) as buffers,
so they are saved and restored with the model's ``state_dict``, and turns them
into ``(mu, kappa)`` on demand.
"""
from typing import Optional, Tuple

import torch
import torch.distributed as torch_dist
from torch import nn

from mmlt.engine.protocols import HasStatisticsWindow
from mmlt.registry import MODELS
from mmlt.utils.validation import check_choice, check_int, check_number
from ..utils.dist_utils import (all_gather_padded, gather_batch_sizes,
                                gather_no_grad, gathered_row_mask,
                                is_distributed)
from .vmf import DEFAULT_MAX_KAPPA, estimate_kappa

_WINDOWS = ('epoch', 'ema')
_KAPPA_METHODS = ('banerjee', 'official', 'mle')
_SYNC_MODES = ('auto', 'gather', 'all_reduce')


@MODELS.register_module()
class VMFEstimator(nn.Module, HasStatisticsWindow):
    r"""Online estimate of one von Mises-Fisher distribution per class.

    For every class ``c`` the estimator keeps the sum ``s_c`` of the unit
    features seen and their number ``m_c``. The mean resultant vector is
    ``a_c = s_c / m_c``, its length ``R_c = ||a_c||`` and the mean direction
    ``mu_c = a_c / R_c``; the concentration ``kappa_c`` solves (or
    approximates) :math:`A_p(\kappa) = R_c` (see
    :func:`mmlt.models.vmf.vmf.estimate_kappa`):

    - ``'banerjee'``: :math:`\kappa = R (p - R^2) / (1 - R^2)` (Banerjee et al.
      2005, Sra 2012);
    - ``'official'``: :math:`\kappa = p R / (1 - R^2)`, the formula of the
      official ProCo code, to reproduce its numbers;
    - ``'mle'``: the maximum-likelihood solution by Newton steps.

    ``kappa`` is clamped to ``[0, max_kappa]``. A class without samples (or
    whose features sum to zero) has no direction: its ``mu`` is the zero vector
    and its ``kappa`` is 0, i.e. the uniform distribution on the sphere.

    Two windows decide which samples enter ``s_c`` and ``m_c``:

    - ``'epoch'`` (the paper's): two sets of sums, the previous epoch's and the
      current epoch's so far, and the estimate pools both. :meth:`start_epoch`
      (called by a hook before every training epoch) moves the current sums to
      the previous ones and zeroes the current ones. This equals the official
      code's pair of estimators that are swapped at each epoch start.
    - ``'ema'``: an exponentially weighted mean over each class's own stream of
      samples. When ``b_c`` samples of class ``c`` arrive,
      ``s_c <- (1 - ema_momentum) ** b_c * s_c + sum of the new features`` and
      ``m_c <- (1 - ema_momentum) ** b_c * m_c + b_c``, so a sample's weight is
      ``(1 - ema_momentum) ** k`` with ``k`` the number of later samples of its
      class. Once ``m_c`` is near its limit ``1 / ema_momentum`` this is the
      usual ``a_c <- (1 - ema_momentum) * a_c + ema_momentum * z`` per sample;
      before that it is the plain mean (no bias towards the zero initial
      value). Classes that receive no samples keep their estimate, so rare
      classes are not forgotten between their appearances.

    :meth:`update` adds a batch with ``index_add_`` in ``O(B p)`` (``O(C p)``
    for the EMA decay or an all-reduce); statistics are float64. It never
    reads a tensor value on the host, so it does not stall a GPU. A batch in
    which any row (on any rank) is NaN or Inf is left out as a whole, decided
    on the device: under AMP such a step overflowed and is skipped by the
    optimizer wrapper, so it must not reach the statistics either. In a
    distributed run every rank adds the batches of all ranks, so the
    statistics are identical on every rank: ``sync='gather'`` gathers the
    (detached) features and labels, ``sync='all_reduce'`` sums the per-class
    batch sums and counts, and ``sync='auto'`` picks whichever moves fewer
    bytes (``world * B * p`` feature values versus ``C * p`` float64 sums).
    Batch sizes may differ between ranks (gathering them is the one host read
    of a distributed update; a single process has none).

    ProCo reads float32 ``mu`` and float64 ``kappa`` through
    :meth:`vmf_parameters` with one slot per view: each slot is refreshed in
    place, only for the classes updated since its last read (``O(B p)``); a
    window swap, a load or a distributed ``all_reduce`` update rebuilds them
    on the next read (``O(C p)``). Other dtypes are computed from the
    buffers on each call. ProCo updates with one view and then reads the
    parameters for that view (docs/methods.md, section ProCo).

    Args:
        num_classes (int): Number of classes ``C``.
        feat_dim (int): Feature dimension ``p`` (at least 2).
        window (str): ``'epoch'`` or ``'ema'``. Defaults to ``'epoch'``.
        ema_momentum (float): Weight of a new sample in steady state for
            ``window='ema'``, in ``(0, 1)``. Defaults to 0.01.
        kappa_method (str): ``'banerjee'``, ``'official'`` or ``'mle'``.
            Defaults to ``'banerjee'``.
        max_kappa (float): Upper clamp of ``kappa`` (a class with a single
            sample has ``R = 1`` and an infinite estimate). Defaults to
            ``DEFAULT_MAX_KAPPA`` of :mod:`mmlt.models.vmf.vmf` (1e6).
        sync (str): ``'auto'``, ``'gather'`` or ``'all_reduce'``: how the
            statistics are shared between ranks. Defaults to ``'auto'``.
        kappa_shrinkage (float): ``n_0 >= 0``, the pseudo-count of an
            empirical-Bayes shrinkage of each class's mean resultant length
            towards the global one before ``kappa`` is estimated:
            ``R~_c = (m_c R_c + n_0 R_0) / (m_c + n_0)`` with
            ``R_0 = sum_c ||s_c|| / sum_c m_c``. A class seen only in a few
            correlated samples (an LVIS rare class: crops of 1-10 objects) has
            ``R_c`` near 1 and, unshrunk, ``kappa`` at ``max_kappa``: a point
            mass. Classes without samples stay uniform. With ``n_0 > 0``
            every read rebuilds all classes (``O(C p)``: ``R_0`` moves with
            every update). 0 (default) is the paper's estimate.

    Shape:
        - features: ``(B, p)`` unit vectors; labels: ``(B,)`` integers in
          ``[0, C)``.
        - mean direction: ``(C, p)``; concentration and resultant length:
          ``(C,)``.
    """

    def __init__(self,
                 num_classes: int,
                 feat_dim: int,
                 window: str = 'epoch',
                 ema_momentum: float = 0.01,
                 kappa_method: str = 'banerjee',
                 max_kappa: float = DEFAULT_MAX_KAPPA,
                 sync: str = 'auto',
                 kappa_shrinkage: float = 0.0) -> None:
        super().__init__()
        self.num_classes = check_int('num_classes', num_classes)
        self.feat_dim = check_int('feat_dim', feat_dim, minimum=2)
        self.window = check_choice('window', window, _WINDOWS)
        self.ema_momentum = check_number(
            'ema_momentum', ema_momentum, strictly_above=0, strictly_below=1)
        self.kappa_method = check_choice('kappa_method', kappa_method,
                                         _KAPPA_METHODS)
        self.max_kappa = check_number(
            'max_kappa', max_kappa, strictly_above=0)
        self.sync = check_choice('sync', sync, _SYNC_MODES)
        self.kappa_shrinkage = float(
            check_number('kappa_shrinkage', kappa_shrinkage, minimum=0))

        def zeros(*shape):
            return torch.zeros(*shape, dtype=torch.float64)

        if window == 'epoch':
            self.register_buffer('current_sums', zeros(num_classes, feat_dim))
            self.register_buffer('current_counts', zeros(num_classes))
            self.register_buffer('previous_sums', zeros(num_classes, feat_dim))
            self.register_buffer('previous_counts', zeros(num_classes))
        else:
            self.register_buffer('ema_sums', zeros(num_classes, feat_dim))
            self.register_buffer('ema_counts', zeros(num_classes))
        # The epoch passed to the last start_epoch(), so that a second call
        # for the same epoch (two hooks, resume) does not wipe the window.
        self.register_buffer('window_epoch',
                             torch.tensor(-1, dtype=torch.long))
        # float32 mu and float64 kappa of all classes for ProCo, one copy per
        # view slot (see vmf_parameters); None: rebuild from the buffers.
        self._slots = None

    # ------------------------------------------------------------------ state
    def extra_repr(self) -> str:
        return (f'num_classes={self.num_classes}, feat_dim={self.feat_dim}, '
                f'window={self.window!r}, kappa_method={self.kappa_method!r}, '
                f'max_kappa={self.max_kappa:g}, sync={self.sync!r}, '
                f'kappa_shrinkage={self.kappa_shrinkage:g}')

    def _statistic_buffers(self):
        if self.window == 'epoch':
            return (self.current_sums, self.current_counts,
                    self.previous_sums, self.previous_counts)
        return (self.ema_sums, self.ema_counts)

    def swap(self) -> None:
        """Start a new window: the current epoch's sums become the previous
        epoch's and the current ones are zeroed (no-op for ``'ema'``)."""
        if self.window != 'epoch':
            return
        self._slots = None
        self.previous_sums.copy_(self.current_sums)
        self.previous_counts.copy_(self.current_counts)
        self.current_sums.zero_()
        self.current_counts.zero_()

    def start_epoch(self, epoch: Optional[int] = None) -> None:
        """Call before every training epoch: :meth:`swap`, once per epoch.

        Args:
            epoch (int, optional): The epoch that starts. A repeated call with
                the epoch of the previous call does nothing, so two callers or
                a resume cannot empty the window. None always swaps.
        """
        if epoch is not None:
            if int(self.window_epoch) == int(epoch):
                return
            self.window_epoch.fill_(int(epoch))
        self.swap()

    # ------------------------------------------------------------- statistics
    def pooled_statistics(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """The sums and counts the estimate uses (float64 copies).

        Returns:
            tuple[Tensor, Tensor]: Sums ``(C, p)`` and counts ``(C,)``: the
            previous plus the current epoch for ``'epoch'``, the weighted sums
            and weights for ``'ema'``.
        """
        if self.window == 'epoch':
            return (self.previous_sums + self.current_sums,
                    self.previous_counts + self.current_counts)
        return self.ema_sums.clone(), self.ema_counts.clone()

    def pooled_counts(self) -> torch.Tensor:
        """The counts ``(C,)`` the estimate uses (float64): the samples (or
        their weights) of the window, the same on every rank."""
        if self.window == 'epoch':
            return self.previous_counts + self.current_counts
        return self.ema_counts.clone()

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        self._slots = None

    def _pooled_rows(self, labels: torch.Tensor):
        """Pooled sums ``(B, p)`` and counts ``(B,)`` of the given classes."""
        if self.window == 'epoch':
            return (self.previous_sums[labels] + self.current_sums[labels],
                    self.previous_counts[labels] + self.current_counts[labels])
        return self.ema_sums[labels], self.ema_counts[labels]

    def _vmf_statistics(self, sums=None, counts=None):
        """(mu, kappa, R) in float64 of all classes, or of the rows of the
        given pooled ``sums`` and ``counts``."""
        if sums is None:
            sums, counts = self.pooled_statistics()
        tiny = torch.finfo(torch.float64).tiny
        norms = torch.linalg.vector_norm(sums, dim=1)
        # Classes without samples (or whose features cancel) have zero sums:
        # dividing by a tiny positive number keeps them exactly zero, so they
        # get mu = 0, R = 0 and hence kappa = 0 (uniform).
        mean_direction = sums / norms.clamp(min=tiny)[:, None]
        # Unit features give R <= 1; rounding can exceed it by ~1e-16.
        resultant = (norms / counts.clamp(min=tiny)).clamp_(max=1.0)
        if self.kappa_shrinkage:  # all classes here (see _mark_updated)
            n0 = self.kappa_shrinkage
            global_resultant = norms.sum() / counts.sum().clamp(min=tiny)
            shrunk = (counts * resultant + n0 * global_resultant) / (counts +
                                                                     n0)
            resultant = torch.where(counts > 0, shrunk.clamp(max=1.0),
                                    resultant)
        kappa = estimate_kappa(
            resultant,
            self.feat_dim,
            method=self.kappa_method,
            max_kappa=self.max_kappa)
        return mean_direction, kappa, resultant

    @torch.no_grad()
    def vmf_parameters(
        self,
        mu_dtype: torch.dtype = torch.float64,
        slot: Optional[int] = None
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Mean directions and concentrations of all classes.

        Args:
            mu_dtype (torch.dtype): dtype of ``mu``; ProCo asks for float32
                so that its ``B x C x p`` product runs there. ``kappa`` is
                always float64 (``C`` numbers, used element-wise). Defaults
                to float64.
            slot (int, optional): With ``mu_dtype=float32``, the kept copy to
                return: ProCo passes the view index. Each slot is brought up
                to date in place, only for the classes updated since it was
                last read (``O(B p)``). A graph that saved view ``v``'s ``mu``
                stays valid while the other views update, and the step's
                backward frees it before view ``v`` of the next step reads
                the slot again (were it not freed, autograd would raise
                rather than use a changed ``mu``). None returns a new tensor
                computed from the buffers (``O(C p)``).

        Returns:
            tuple[Tensor, Tensor]: ``mu`` of shape ``(C, p)`` (unit rows, zero
            rows for classes without a direction) and ``kappa`` ``(C,)``.
        """
        if mu_dtype != torch.float32 or slot is None:
            mean_direction, kappa, _ = self._vmf_statistics()
            return mean_direction.to(mu_dtype), kappa
        device = self._statistic_buffers()[0].device
        if self._slots is None or (self._slots and
                                   self._slots[0]['mu'].device != device):
            self._slots = []
        while len(self._slots) <= slot:
            mean_direction, kappa, _ = self._vmf_statistics()
            self._slots.append(
                dict(mu=mean_direction.float(), kappa=kappa, pending=[]))
        entry = self._slots[slot]
        if entry['pending'] is None:  # too many updates since its last read
            mean_direction, kappa, _ = self._vmf_statistics()
            entry.update(mu=mean_direction.float(), kappa=kappa, pending=[])
        elif entry['pending']:
            labels = torch.cat(entry['pending'])
            entry['pending'] = []
            mean_direction, kappa, _ = self._vmf_statistics(
                *self._pooled_rows(labels))
            entry['mu'].index_put_((labels, ), mean_direction.float())
            entry['kappa'].index_put_((labels, ), kappa)
        return entry['mu'], entry['kappa']

    def _mark_updated(self, labels: Optional[torch.Tensor]) -> None:
        """Note the classes whose parameters changed (None: all of them)."""
        if self._slots is None:
            return
        if labels is None or self.kappa_shrinkage:
            # shrinkage: R_0 changes every class's estimate
            self._slots = None
            return
        for entry in self._slots:
            if entry['pending'] is None:
                continue
            entry['pending'].append(labels)
            # Past about C rows a rebuild is cheaper than the row updates.
            if sum(len(p) for p in entry['pending']) > self.num_classes:
                entry['pending'] = None

    def mean_direction(self) -> torch.Tensor:
        """Unit mean direction per class, float64 ``(C, p)`` (zero rows for
        classes without samples)."""
        return self._vmf_statistics()[0]

    def concentration(self) -> torch.Tensor:
        """Concentration ``kappa`` per class, float64 ``(C,)`` (0 for classes
        without samples)."""
        return self._vmf_statistics()[1]

    def resultant_length(self) -> torch.Tensor:
        """Mean resultant length ``R = ||s_c|| / m_c`` per class, float64
        ``(C,)`` in ``[0, 1]`` (0 for classes without samples)."""
        return self._vmf_statistics()[2]

    # ----------------------------------------------------------------- update
    def _check_batch(self, features: torch.Tensor, labels: torch.Tensor):
        """Shapes and dtypes only: values are never read on the host."""
        if features.dim() != 2 or features.shape[1] != self.feat_dim:
            raise ValueError(
                f'features must have shape (B, {self.feat_dim}), got '
                f'{tuple(features.shape)}')
        if labels.dim() != 1 or labels.shape[0] != features.shape[0]:
            raise ValueError(
                f'labels must have shape ({features.shape[0]},) to match the '
                f'features, got {tuple(labels.shape)}')
        if labels.is_floating_point() or labels.is_complex() or \
                labels.dtype == torch.bool:
            raise ValueError(
                f'labels must be integer class indices, got {labels.dtype}')
        if not features.is_floating_point():
            raise ValueError(
                f'features must be floating point, got {features.dtype}')

    def _choose_sync(self, sizes, feature_dtype: torch.dtype) -> str:
        if self.sync != 'auto':
            return self.sync
        feature_bytes = torch.finfo(feature_dtype).bits // 8
        gather_bytes = len(sizes) * max(sizes) * (
            self.feat_dim * feature_bytes + 8)
        reduce_bytes = self.num_classes * (self.feat_dim + 1) * 8
        return 'gather' if gather_bytes <= reduce_bytes else 'all_reduce'

    @torch.no_grad()
    def update(self,
               features: torch.Tensor,
               labels: torch.Tensor,
               weight: Optional[torch.Tensor] = None,
               max_rows: Optional[int] = None) -> None:
        """Add a batch of unit features to the statistics.

        Features are detached. If any row (of any rank) has a NaN or Inf, the
        whole batch is left out (an overflowing AMP step). Labels outside
        ``[0, C)`` fail in ``index_add_`` (a device-side assert on CUDA).
        In a distributed run every rank must call this with its own batch
        (sizes may differ) and all ranks then hold the same statistics.

        Args:
            features (Tensor): Unit features, shape ``(B, p)``.
            labels (Tensor): Integer labels in ``[0, C)``, shape ``(B,)``.
            weight (Tensor, optional): Per-row weights ``(B,)``, e.g. the 0/1
                confidence mask of pseudo-labels in semi-supervised training:
                a row adds ``w * z`` to its class's sum and ``w`` to its
                count, so weight 0 leaves it out without a host-side
                selection. Defaults to None (every row weighs 1).
            max_rows (int, optional): A bound on every rank's ``B``: the
                gather pads to it (weight 0 on the padding) instead of
                exchanging the ranks' sizes, so nothing is read on the host.
                Defaults to None.
        """
        features, labels, weight = self._to_statistics_device(
            features, labels, weight)
        mode = 'local'
        if is_distributed():
            shared = self._share_batch(features, labels, weight) \
                if max_rows is None else self._share_padded_batch(
                    features, labels, weight, max_rows)
            if shared is None:  # every rank's batch is empty
                return
            mode, features, labels, weight = shared
        features, row_weight, num_bad = self._weigh_rows(features, weight)
        if mode == 'all_reduce':
            self._add_all_reduced(features, labels, row_weight, num_bad)
        else:
            self._add_local(features, labels, row_weight, num_bad)

    def _to_statistics_device(self, features: torch.Tensor,
                              labels: torch.Tensor,
                              weight: Optional[torch.Tensor]):
        """Check the batch and move it, detached, to the buffers' device
        (labels as long, weights in the features' dtype)."""
        self._check_batch(features, labels)
        device = self._statistic_buffers()[0].device
        features = features.detach().to(device)
        labels = labels.to(device=device, dtype=torch.long)
        if weight is not None:
            if weight.shape != labels.shape:
                raise ValueError(
                    f'weight must have shape {tuple(labels.shape)} (one per '
                    f'row), got {tuple(weight.shape)}')
            weight = weight.detach().to(device=device, dtype=features.dtype)
        return features, labels, weight

    def _share_batch(self, features: torch.Tensor, labels: torch.Tensor,
                     weight: Optional[torch.Tensor]):
        """Pick the distributed mode and, for ``'gather'``, gather every
        rank's rows. Returns ``(mode, features, labels, weight)``, or None
        when the batches of all ranks are empty."""
        sizes = None
        if self.sync != 'all_reduce':
            sizes = gather_batch_sizes(features)
            if max(sizes) == 0:
                return None
        mode = self._choose_sync(sizes, features.dtype)
        if mode == 'gather':
            features = gather_no_grad(features, sizes)
            labels = gather_no_grad(labels, sizes)
            if weight is not None:
                weight = gather_no_grad(weight, sizes)
        return mode, features, labels, weight

    def _share_padded_batch(self, features: torch.Tensor, labels: torch.Tensor,
                            weight: Optional[torch.Tensor], max_rows: int):
        """:meth:`_share_batch` without a host read: each rank's rows are
        padded to ``max_rows`` and the padding weighs 0 (it adds exact zeros
        to the sums and counts)."""
        mode = self._choose_sync([max_rows] * torch_dist.get_world_size(),
                                 features.dtype)
        if mode == 'gather':
            real = gathered_row_mask(len(labels), max_rows, labels.device)
            features = all_gather_padded(features, max_rows)
            labels = all_gather_padded(labels, max_rows)
            weight = real.to(features.dtype) if weight is None else \
                all_gather_padded(weight, max_rows)
        return mode, features, labels, weight

    @staticmethod
    def _weigh_rows(features: torch.Tensor, weight: Optional[torch.Tensor]):
        """Float64 weighted rows with the non-finite ones zeroed, the row
        weights and the number of non-finite rows (a device scalar)."""
        # A row sum is NaN/Inf iff a feature is (unit features cannot
        # overflow it): one reduction instead of an element-wise test.
        finite = torch.isfinite(features.sum(dim=1))
        # Zero the bad rows first (NaN * 0 is NaN); the caller then weights
        # every row by whether the whole batch is finite.
        features = features.to(torch.float64).masked_fill(~finite[:, None], 0)
        num_bad = (~finite).sum(dtype=torch.float64)
        row_weight = finite.to(torch.float64)
        if weight is not None:
            # A non-finite row still voids the whole batch (an overflowing
            # step), whatever its weight.
            row_weight = row_weight * weight.to(torch.float64)
            features = features * weight.to(torch.float64)[:, None]
        return features, row_weight, num_bad

    def _add_all_reduced(self, features: torch.Tensor, labels: torch.Tensor,
                         row_weight: torch.Tensor,
                         num_bad: torch.Tensor) -> None:
        """Sum the per-class batch sums and counts, and the number of bad
        rows, over the ranks in one all-reduce and add them unless some rank
        had a bad row."""
        batch = features.new_zeros(self.num_classes * (self.feat_dim + 1) + 1)
        stats = batch[:-1].view(self.num_classes, self.feat_dim + 1)
        stats[:, :self.feat_dim].index_add_(0, labels, features)
        stats[:, self.feat_dim].index_add_(0, labels, row_weight)
        batch[-1] = num_bad
        torch_dist.all_reduce(batch, op=torch_dist.ReduceOp.SUM)
        keep = (batch[-1] == 0).to(torch.float64)
        self._add_dense(stats[:, :self.feat_dim] * keep,
                        stats[:, self.feat_dim] * keep)
        # Other ranks' classes are not known here without a host read: the
        # parameters are rebuilt on the next read.
        self._mark_updated(None)

    def _add_local(self, features: torch.Tensor, labels: torch.Tensor,
                   row_weight: torch.Tensor, num_bad: torch.Tensor) -> None:
        """Add the (local or gathered) rows unless one of them is bad: 1
        adds the batch, 0 adds nothing, decided on the device."""
        keep = (num_bad == 0).to(torch.float64)
        weights = row_weight * keep
        if self.window == 'epoch':
            # Straight into the running sums: O(B p).
            self.current_sums.index_add_(0, labels, features * keep)
            self.current_counts.index_add_(0, labels, weights)
        else:
            sums = torch.zeros_like(self.ema_sums).index_add_(
                0, labels, features * keep)
            counts = torch.zeros_like(self.ema_counts).index_add_(
                0, labels, weights)
            self._add_dense(sums, counts)
        self._mark_updated(labels)

    def _add_dense(self, sums: torch.Tensor, counts: torch.Tensor) -> None:
        """Add per-class batch ``sums (C, p)`` and ``counts (C,)``."""
        if self.window == 'epoch':
            self.current_sums.add_(sums)
            self.current_counts.add_(counts)
        else:
            # Classes without new samples have decay 1: they keep their
            # estimate.
            decay = (1.0 - self.ema_momentum)**counts
            self.ema_sums.mul_(decay[:, None]).add_(sums)
            self.ema_counts.mul_(decay).add_(counts)
