"""Online per-class von Mises-Fisher estimation for ProCo.

ProCo (Du et al., "Probabilistic Contrastive Learning for Long-Tailed Visual
Recognition", TPAMI 2024, arXiv 2403.06726) models the unit contrastive
features of class ``c`` as ``vMF(mu_c, kappa_c)`` on ``S^{p-1}`` and estimates
both parameters online from the training features. This module keeps the
sufficient statistics (per-class sums of unit features and counts) as buffers,
so they are saved and restored with the model's ``state_dict``, and turns them
into ``(mu, kappa)`` on demand.
"""
import warnings
from typing import Dict, Optional, Tuple

import torch
import torch.distributed as torch_dist
from torch import nn

from mmlt.registry import MODELS
from .dist_utils import gather_batch_sizes, gather_no_grad, is_distributed
from .vmf import DEFAULT_MAX_KAPPA, estimate_kappa

_WINDOWS = ('epoch', 'ema')
_KAPPA_METHODS = ('banerjee', 'official', 'mle')
_SYNC_MODES = ('auto', 'gather', 'all_reduce')


def _storage_use_count(tensor: torch.Tensor) -> Optional[int]:
    """How many tensors share ``tensor``'s storage (None if torch cannot tell).

    Used to decide whether a cached tensor handed out earlier may still be held
    (for example saved by autograd for a pending backward pass), in which case
    it must not be modified in place.
    """
    try:
        return torch._C._storage_Use_Count(tensor.untyped_storage()._cdata)
    except (AttributeError, RuntimeError):  # private API: be conservative
        return None


def _use_counts(mu: torch.Tensor, kappa: torch.Tensor):
    counts = (_storage_use_count(mu), _storage_use_count(kappa))
    return None if None in counts else counts


class _ParameterBuffers:
    """``mu``/``kappa`` of all classes in one dtype, in a small pool of buffers.

    A refresh writes the changed rows into the current buffer in place, unless
    tensors handed out from it are still alive (typically saved by autograd for
    the backward pass of an earlier view); then it switches to a buffer nobody
    holds and brings it up to date by recomputing only the rows changed since
    that buffer was last current. Tensors handed out are thus never modified,
    and a step with two views costs ``O(B p)`` instead of a ``(C, p)`` copy.
    """

    max_buffers = 3

    def __init__(self, mu: torch.Tensor, kappa: torch.Tensor) -> None:
        self.slots = [self._slot(mu, kappa)]
        self.current = 0

    @staticmethod
    def _slot(mu, kappa):
        # `stale`: row indices changed while this buffer was not current.
        return dict(mu=mu, kappa=kappa, base=_use_counts(mu, kappa), stale=[])

    @staticmethod
    def _held(slot) -> bool:
        counts = _use_counts(slot['mu'], slot['kappa'])
        return counts is None or counts != slot['base']

    def get(self) -> Tuple[torch.Tensor, torch.Tensor]:
        slot = self.slots[self.current]
        # New tensor objects on the buffer's storage, so that whoever keeps
        # them shows in the storage's use count.
        return slot['mu'].detach(), slot['kappa'].detach()

    def refresh(self, rows: torch.Tensor, compute_rows) -> None:
        """Make ``rows`` current; ``compute_rows(rows)`` gives float64
        ``(mu_rows, kappa_rows)`` from the statistics."""
        slot = self.slots[self.current]
        if self._held(slot):
            free = [
                index for index, other in enumerate(self.slots)
                if index != self.current and not self._held(other)
            ]
            if free:
                self.current = free[0]
            else:
                self.slots.append(
                    self._slot(slot['mu'].clone(), slot['kappa'].clone()))
                self.current = len(self.slots) - 1
                if len(self.slots) > self.max_buffers:
                    # Forget the oldest other buffer (its holder keeps it).
                    del self.slots[0]
                    self.current -= 1
            target = self.slots[self.current]
            if target['stale']:
                rows_to_write = torch.cat(target['stale'] + [rows]).unique()
            else:
                rows_to_write = rows
        else:
            target, rows_to_write = slot, rows
        target['stale'] = []
        mu_rows, kappa_rows = compute_rows(rows_to_write)
        dtype = target['mu'].dtype
        target['mu'].index_copy_(0, rows_to_write, mu_rows.to(dtype))
        target['kappa'].index_copy_(0, rows_to_write, kappa_rows.to(dtype))
        num_classes = target['kappa'].numel()
        kept = [target]
        for other in self.slots:
            if other is not target:
                other['stale'].append(rows)
                # Once catching up costs more than a copy, forget the buffer.
                if sum(r.numel() for r in other['stale']) <= num_classes:
                    kept.append(other)
        self.slots, self.current = kept, 0


@MODELS.register_module()
class VMFEstimator(nn.Module):
    r"""Online estimate of one von Mises-Fisher distribution per class.

    For every class ``c`` the estimator keeps the sum ``s_c`` of the unit
    features seen and their number ``m_c``. The mean resultant vector is
    ``a_c = s_c / m_c``, its length ``R_c = ||a_c||`` and the mean direction
    ``mu_c = a_c / R_c``; the concentration ``kappa_c`` solves (or
    approximates) :math:`A_p(\kappa) = R_c` (see
    :func:`mmlt.models.utils.vmf.estimate_kappa`):

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

    :meth:`update` adds a batch with ``index_add_`` in ``O(B p)`` (plus
    ``O(C p)`` for an all-reduce in distributed runs); statistics are float64.
    Rows containing NaN or Inf are skipped with a warning, so they never reach
    the statistics. In a distributed run every rank adds the batches of all
    ranks, so the statistics are identical on every rank: ``sync='gather'``
    gathers the (detached) features and labels, ``sync='all_reduce'`` sums the
    per-class batch sums and counts, and ``sync='auto'`` picks whichever moves
    fewer bytes (``world * B * p`` feature values versus ``C * p`` float64
    sums). Batch sizes may differ between ranks.

    ``mu`` and ``kappa`` are cached per dtype (not in the ``state_dict``: they
    are derived) and refreshed after each update only for the classes in the
    batch (``O(B p)``). Tensors returned by :meth:`vmf_parameters` are never
    modified afterwards: while they are alive (e.g. saved by autograd for an
    earlier view's backward pass) refreshes go to a second buffer.

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
            ``DEFAULT_MAX_KAPPA`` of :mod:`mmlt.models.utils.vmf` (1e6).
        sync (str): ``'auto'``, ``'gather'`` or ``'all_reduce'``: how the
            statistics are shared between ranks. Defaults to ``'auto'``.

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
                 sync: str = 'auto') -> None:
        super().__init__()
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) \
                or num_classes < 1:
            raise ValueError(
                f'num_classes must be a positive int, got {num_classes!r}')
        if isinstance(feat_dim, bool) or not isinstance(feat_dim, int) \
                or feat_dim < 2:
            raise ValueError(
                f'feat_dim must be an int >= 2, got {feat_dim!r}')
        if window not in _WINDOWS:
            raise ValueError(
                f'window must be one of {_WINDOWS}, got {window!r}')
        if not 0.0 < float(ema_momentum) < 1.0:
            raise ValueError(
                f'ema_momentum must be in (0, 1), got {ema_momentum!r}')
        if kappa_method not in _KAPPA_METHODS:
            raise ValueError(f'kappa_method must be one of {_KAPPA_METHODS}, '
                             f'got {kappa_method!r}')
        max_kappa = float(max_kappa)
        if not (max_kappa > 0.0 and max_kappa < float('inf')):
            raise ValueError(
                f'max_kappa must be finite and > 0, got {max_kappa!r}')
        if sync not in _SYNC_MODES:
            raise ValueError(
                f'sync must be one of {_SYNC_MODES}, got {sync!r}')
        self.num_classes = num_classes
        self.feat_dim = feat_dim
        self.window = window
        self.ema_momentum = float(ema_momentum)
        self.kappa_method = kappa_method
        self.max_kappa = max_kappa
        self.sync = sync

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
        # dtype -> cached mu (C, p) and kappa (C,), derived from the buffers.
        self._cache: Dict[torch.dtype, _ParameterBuffers] = {}

    # ------------------------------------------------------------------ state
    def extra_repr(self) -> str:
        return (f'num_classes={self.num_classes}, feat_dim={self.feat_dim}, '
                f'window={self.window!r}, kappa_method={self.kappa_method!r}, '
                f'max_kappa={self.max_kappa:g}, sync={self.sync!r}')

    def _apply(self, fn, *args, **kwargs):
        # .to()/.cuda() move the buffers; the derived caches are rebuilt.
        self._cache.clear()
        return super()._apply(fn, *args, **kwargs)

    def _load_from_state_dict(self, *args, **kwargs):
        self._cache.clear()
        return super()._load_from_state_dict(*args, **kwargs)

    def reset(self) -> None:
        """Forget every sample (all sums and counts become zero)."""
        for buffer in self._statistic_buffers():
            buffer.zero_()
        self._cache.clear()

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
        self.previous_sums.copy_(self.current_sums)
        self.previous_counts.copy_(self.current_counts)
        self.current_sums.zero_()
        self.current_counts.zero_()
        self._cache.clear()

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

    def _pooled_rows(self, rows: Optional[torch.Tensor]):
        if rows is None:
            return self.pooled_statistics()
        if self.window == 'epoch':
            return (self.previous_sums.index_select(0, rows) +
                    self.current_sums.index_select(0, rows),
                    self.previous_counts.index_select(0, rows) +
                    self.current_counts.index_select(0, rows))
        return (self.ema_sums.index_select(0, rows),
                self.ema_counts.index_select(0, rows))

    def _vmf_rows(self, rows: Optional[torch.Tensor] = None):
        """(mu, kappa, R) in float64 for ``rows`` (all classes when None)."""
        sums, counts = self._pooled_rows(rows)
        tiny = torch.finfo(torch.float64).tiny
        norms = torch.linalg.vector_norm(sums, dim=1)
        # Classes without samples (or whose features cancel) have zero sums:
        # dividing by a tiny positive number keeps them exactly zero, so they
        # get mu = 0, R = 0 and hence kappa = 0 (uniform).
        mean_direction = sums / norms.clamp(min=tiny)[:, None]
        # Unit features give R <= 1; rounding can exceed it by ~1e-16.
        resultant = (norms / counts.clamp(min=tiny)).clamp_(max=1.0)
        kappa = estimate_kappa(
            resultant,
            self.feat_dim,
            method=self.kappa_method,
            max_kappa=self.max_kappa)
        return mean_direction, kappa, resultant

    def vmf_parameters(
            self,
            dtype: torch.dtype = torch.float64
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Mean directions and concentrations of all classes.

        The result is cached (refreshed for the classes of each update) and is
        never modified afterwards; do not modify it in place.

        Args:
            dtype (torch.dtype): dtype of the result. Defaults to float64.

        Returns:
            tuple[Tensor, Tensor]: ``mu`` of shape ``(C, p)`` (unit rows, zero
            rows for classes without a direction) and ``kappa`` of shape
            ``(C,)``.
        """
        cache = self._cache.get(dtype)
        if cache is None:
            mu, kappa, _ = self._vmf_rows()
            cache = _ParameterBuffers(mu.to(dtype), kappa.to(dtype))
            self._cache[dtype] = cache
        return cache.get()

    def mean_direction(self) -> torch.Tensor:
        """Unit mean direction per class, float64 ``(C, p)`` (zero rows for
        classes without samples)."""
        return self.vmf_parameters(torch.float64)[0].clone()

    def concentration(self) -> torch.Tensor:
        """Concentration ``kappa`` per class, float64 ``(C,)`` (0 for classes
        without samples)."""
        return self.vmf_parameters(torch.float64)[1].clone()

    def resultant_length(self) -> torch.Tensor:
        """Mean resultant length ``R = ||s_c|| / m_c`` per class, float64
        ``(C,)`` in ``[0, 1]`` (0 for classes without samples)."""
        return self._vmf_rows()[2]

    def _refresh_cache(self, rows: torch.Tensor) -> None:
        """Recompute the cached ``mu``/``kappa`` of the classes ``rows``."""
        if not self._cache or rows.numel() == 0:
            return
        computed = {}

        def compute_rows(which):
            # Shared by the dtypes that need exactly the updated rows.
            key = id(which)
            if key not in computed:
                computed[key] = self._vmf_rows(which)[:2]
            return computed[key]

        for cache in self._cache.values():
            cache.refresh(rows, compute_rows)

    # ----------------------------------------------------------------- update
    def _check_batch(self, features: torch.Tensor, labels: torch.Tensor,
                     validate: bool) -> Tuple[torch.Tensor, torch.Tensor]:
        """Validate a batch and drop the rows with non-finite features."""
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
        features, labels = features.detach(), labels.long()
        if not features.is_floating_point():
            features = features.to(torch.float64)
        if not validate or labels.numel() == 0:
            return features, labels
        finite_rows = torch.isfinite(features).all(dim=1)
        # One host sync for all three checks.
        low, high, num_skipped = torch.stack(
            [labels.min(), labels.max(), (~finite_rows).sum()]).tolist()
        if low < 0 or high >= self.num_classes:
            bad = low if low < 0 else high
            raise ValueError(
                f'labels must be in [0, {self.num_classes}), got {bad}')
        if num_skipped:
            warnings.warn(
                f'VMFEstimator.update: skipped {num_skipped} of '
                f'{features.shape[0]} feature rows that contain NaN or Inf; '
                'they do not enter the vMF statistics.')
            features, labels = features[finite_rows], labels[finite_rows]
        return features, labels

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
               validate: bool = True) -> None:
        """Add a batch of unit features to the statistics.

        Features are detached; rows with NaN or Inf are skipped with a
        warning. In a distributed run every rank must call this with its own
        batch (sizes may differ) and all ranks then hold the same statistics.

        Args:
            features (Tensor): Unit features, shape ``(B, p)``.
            labels (Tensor): Integer labels in ``[0, C)``, shape ``(B,)``.
            validate (bool): Check the label range and skip non-finite rows.
                Pass False only when the caller has checked both (as
                :class:`~mmlt.models.losses.ProCoLoss` does); it saves a few
                small operations. Shapes are always checked. Defaults to True.
        """
        features, labels = self._check_batch(features, labels, validate)
        device = self._statistic_buffers()[0].device
        features = features.to(device)
        labels = labels.to(device)

        mode = 'local'
        if is_distributed():
            sizes = None
            if self.sync != 'all_reduce':
                sizes = gather_batch_sizes(features)
                if max(sizes) == 0:  # every rank's batch is empty
                    return
            mode = self._choose_sync(sizes, features.dtype)
            if mode == 'gather':
                features = gather_no_grad(features, sizes)
                labels = gather_no_grad(labels, sizes)

        if mode == 'all_reduce':
            # Per-class batch sums and counts in one (C, p + 1) all-reduce.
            batch = features.new_zeros((self.num_classes, self.feat_dim + 1),
                                       dtype=torch.float64)
            batch[:, :self.feat_dim].index_add_(0, labels,
                                                features.to(torch.float64))
            batch[:, self.feat_dim].index_add_(
                0, labels, torch.ones_like(labels, dtype=torch.float64))
            torch_dist.all_reduce(batch, op=torch_dist.ReduceOp.SUM)
            batch_counts = batch[:, self.feat_dim]
            rows = torch.nonzero(batch_counts > 0).flatten()
            self._add_class_sums(rows, batch[rows, :self.feat_dim],
                                 batch_counts[rows])
        elif self.window == 'epoch':
            # Straight into the running sums: O(B p).
            self.current_sums.index_add_(0, labels,
                                         features.to(torch.float64))
            self.current_counts.index_add_(
                0, labels, torch.ones_like(labels, dtype=torch.float64))
            rows = torch.unique(labels)
        else:
            # The EMA decay needs each class's number of new samples.
            rows, inverse = torch.unique(labels, return_inverse=True)
            sums = features.new_zeros((rows.numel(), self.feat_dim),
                                      dtype=torch.float64)
            sums.index_add_(0, inverse, features.to(torch.float64))
            counts = torch.bincount(
                inverse, minlength=rows.numel()).to(torch.float64)
            self._add_class_sums(rows, sums, counts)
        self._refresh_cache(rows)

    def _add_class_sums(self, rows: torch.Tensor, sums: torch.Tensor,
                        counts: torch.Tensor) -> None:
        """Add per-class batch ``sums``/``counts`` to the classes ``rows``."""
        if rows.numel() == 0:
            return
        if self.window == 'epoch':
            self.current_sums.index_add_(0, rows, sums)
            self.current_counts.index_add_(0, rows, counts)
        else:
            decay = (1.0 - self.ema_momentum)**counts
            self.ema_sums[rows] = self.ema_sums[rows] * decay[:, None] + sums
            self.ema_counts[rows] = self.ema_counts[rows] * decay + counts
