"""The contracts between mmlt's hooks and the modules they drive.

A hook finds its targets with ``isinstance(module, Protocol)``: a module
takes part by inheriting the protocol (a small abstract mixin), never by
happening to have a method of the right name. So a loss that wraps a vMF
estimator does not have to avoid the name ``start_epoch`` to keep the window
hook from swapping the window twice, and a third-party module with a
``set_class_counts`` of its own is left alone.

Only the standard library is imported here: losses, the vMF estimator and
metrics inherit these classes without pulling in MMPretrain or MMDetection.
"""
from abc import ABC, abstractmethod
from typing import Optional

__all__ = [
    'NeedsClassCounts', 'HasStatisticsWindow', 'HasPseudoLabelStats',
    'NeedsOutDir', 'NeedsPrototypes', 'ExtractsClusteringFeatures',
    'SeedsItems', 'SkipsFirstIndices', 'GathersAcrossRanks',
    'HasStandardAPMode'
]


class NeedsClassCounts(ABC):
    """Takes the training set's per-class counts.

    :class:`mmlt.ClassCountsHook` calls :meth:`set_class_counts` on every
    module of the model (before the run, so that EMAHook's copy has them
    too, and again before training) with the prior's counts, and on every
    metric of the validation/test evaluator (before validating or testing)
    with the training file's counts.
    """

    __slots__ = ()

    @abstractmethod
    def set_class_counts(self, class_counts) -> None:
        """Keep what the counts ``(C,)`` imply (a prior, class groups)."""


class HasStatisticsWindow(ABC):
    """Keeps statistics over a window of training (vMF estimators).

    :class:`mmlt.VMFWindowHook` calls :meth:`start_epoch` with the window's
    index at the start of every window: each training epoch, or every
    ``window_iters`` iterations. A call with the index of the current window
    must change nothing (a resume, a second hook).
    """

    __slots__ = ()

    @abstractmethod
    def start_epoch(self, epoch: Optional[int] = None) -> None:
        """Start window ``epoch``."""


class HasPseudoLabelStats(ABC):
    """Counts its pseudo-labels over an epoch (semi-supervised heads).

    :class:`mmlt.SemiSupervisedHook` requires one such module in the model,
    calls :meth:`reset_pseudo_label_counts` at the start of every training
    epoch (not of an epoch resumed in its middle), logs
    :meth:`pseudo_label_stats` and :meth:`unlabeled_prior_stats` at its end
    and then calls :meth:`end_of_epoch`.
    """

    __slots__ = ()

    @abstractmethod
    def reset_pseudo_label_counts(self) -> None:
        """Forget the counts of the epoch so far."""

    @abstractmethod
    def pseudo_label_stats(self) -> dict:
        """Statistics of the epoch so far: ``pl_mask_rate``, ``pl_acc`` and
        their ``_many``/``_medium``/``_few`` variants, in percent."""

    def unlabeled_prior_stats(self) -> dict:
        """Host numbers on the unlabeled class distribution for the epoch
        log (``pi_u_*`` distances, ``distributions`` for the plot); none by
        default."""
        return {}

    def end_of_epoch(self) -> None:
        """Called on every rank after the epoch's statistics are logged
        (e.g. to set an adjustment for the next epoch); nothing by default.
        """


class NeedsOutDir(ABC):
    """Writes files next to the run's logs (metrics' per-class tables).

    :class:`mmlt.MetricOutDirHook` calls :meth:`set_out_dir` with the
    runner's ``work_dir`` on every metric of the evaluator before validating
    or testing.
    """

    __slots__ = ()

    @abstractmethod
    def set_out_dir(self, out_dir: str) -> None:
        """Write later files under ``out_dir``."""


class HasStandardAPMode(ABC):
    """Can switch to what the standard LVIS AP alone needs (MMDetection's
    test detections, no AP-fixed budget), for a cheap periodic validation.

    :class:`mmlt.StandardAPUntilLastHook` calls :meth:`set_standard_only`
    with True before a validation that is not the run's last, and with False
    after it.
    """

    __slots__ = ()

    @abstractmethod
    def set_standard_only(self, standard_only: bool) -> None:
        """Compute only what the standard AP needs (True) or everything."""


class NeedsPrototypes(ABC):
    """Takes cluster prototypes of the training set (ProtoNCE).

    :class:`mmlt.PrototypeClusteringHook` clusters the training set's
    embeddings before each clustering epoch and calls :meth:`set_prototypes`
    with, per clustering, the prototypes, their concentrations and every
    sample's assignment.
    """

    __slots__ = ()

    @abstractmethod
    def set_prototypes(self, prototypes, concentrations, assignments,
                       epoch: int = 0) -> None:
        """Keep the clusterings of ``epoch``."""


class ExtractsClusteringFeatures(ABC):
    """Embeds training batches for clustering (PCL).

    :class:`mmlt.PrototypeClusteringHook` embeds the training set with the
    first module of the model that declares this protocol.
    """

    __slots__ = ()

    @abstractmethod
    def extract_clustering_features(self, data_batch: dict):
        """Unit embeddings ``(B, d)`` of a batch."""


class SeedsItems(ABC):
    """Seeds the generators from ``(seed, epoch, index)`` before loading an
    item (training datasets; see :class:`mmlt.SeededDataset`).

    :class:`mmlt.ExactResumeHook` calls :meth:`set_item_seed_key` once
    before training with a shared-memory ``[seed, epoch]`` tensor that it
    updates at the start of every epoch; every process that loads items
    (the main one, workers, persistent workers) reads it. Without a key the
    dataset loads items as it always does.
    """

    __slots__ = ()

    @abstractmethod
    def set_item_seed_key(self, key) -> None:
        """Seed later items from ``key`` (a ``(2,)`` long tensor)."""


class SkipsFirstIndices(ABC):
    """A sampler that can leave out the first indices of its passes (a
    resume inside an epoch; see :class:`mmlt.ResumableSampler`).

    :class:`mmlt.ExactResumeHook` calls :meth:`skip_first` with the number
    of indices this rank had used before a restart at the start of the
    resumed epoch and with 0 at its end. While it is set, the sampler's
    passes and its length leave them out.
    """

    __slots__ = ()

    @abstractmethod
    def skip_first(self, num_indices: int) -> None:
        """Leave out the first ``num_indices`` indices of each pass."""


class GathersAcrossRanks(ABC):
    """Gathers rows of every rank in the training step (contrastive losses,
    ProCo's estimator, the heads that hold them).

    :class:`mmlt.GatherBoundHook` calls :meth:`set_max_batch_size` before
    training with the training loader's batch size (the most samples a rank
    has in a step) on every outermost module that declares this protocol:
    gathers then pad each rank's rows to a bound derived from it instead of
    exchanging the ranks' sizes, which reads them on the host. A module that
    holds others (a RoI head: rows are RoIs, not images) passes its own
    bound on.
    """

    __slots__ = ()

    @abstractmethod
    def set_max_batch_size(self, max_batch_size: int) -> None:
        """At most ``max_batch_size`` samples per rank and step."""
