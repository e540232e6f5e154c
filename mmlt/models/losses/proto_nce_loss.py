"""PCL's ProtoNCE: contrast embeddings with cluster prototypes.

Reference: Li et al., "Prototypical Contrastive Learning of Unsupervised
Representations", ICLR 2021.
"""
from typing import List, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from mmlt.engine.protocols import NeedsPrototypes
from mmlt.registry import MODELS
from mmlt.utils.validation import check_int
from .utils import check_reduction, check_unit_features, weight_reduce_loss


def sample_negative_prototypes(
        positive: torch.Tensor,
        num_prototypes: int,
        num_negatives: int,
        generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Draw, for each sample, distinct negative prototypes uniformly.

    Each row holds ``num_negatives`` different prototype indices, none equal
    to that row's ``positive``: a uniform random subset of the other
    ``num_prototypes - 1`` prototypes (the ``r`` of the PCL paper).

    Args:
        positive (torch.Tensor): ``(N, )`` positive prototype per sample.
        num_prototypes (int): ``k``.
        num_negatives (int): ``r <= k - 1``.
        generator (torch.Generator, optional): Random generator on the
            device of ``positive``; the global one when None.

    Returns:
        torch.Tensor: ``(N, r)`` long indices (in no particular order).
    """
    if not 0 <= num_negatives <= num_prototypes - 1:
        raise ValueError(
            f'num_negatives={num_negatives}; expected 0 <= r <= '
            f'{num_prototypes - 1} (the prototypes other than the positive).')
    scores = torch.rand(
        positive.shape[0],
        num_prototypes,
        generator=generator,
        device=positive.device)
    # Scores are in [0, 1): a 2 keeps the positive out of the r smallest.
    scores.scatter_(1, positive[:, None].long(), 2.0)
    return scores.topk(num_negatives, dim=1, largest=False).indices


def proto_nce(
        features: torch.Tensor,
        prototypes: Sequence[torch.Tensor],
        concentrations: Sequence[torch.Tensor],
        assignments: Sequence[torch.Tensor],
        num_negatives: Optional[int] = None,
        generator: Optional[torch.Generator] = None) -> torch.Tensor:
    r"""Per-sample prototype term of ProtoNCE, averaged over clusterings.

    For clustering ``m`` with prototypes ``c_j``, concentrations ``phi_j``
    and the sample's assigned prototype ``s``:

    .. math::
        L_m = -\log \frac{\exp(v \cdot c_s / \phi_s)}
              {\sum_{j \in \{s\} \cup R} \exp(v \cdot c_j / \phi_j)}

    where ``R`` is every other prototype (``num_negatives=None``) or ``r``
    of them drawn uniformly per sample. The result is
    ``(1 / M) sum_m L_m``.

    Args:
        features (torch.Tensor): ``(N, p)`` embeddings ``v``.
        prototypes (Sequence[torch.Tensor]): ``M`` tensors ``(k_m, p)``.
        concentrations (Sequence[torch.Tensor]): ``M`` tensors ``(k_m, )``.
        assignments (Sequence[torch.Tensor]): ``M`` tensors ``(N, )``: each
            sample's prototype.
        num_negatives (int, optional): ``r``; None (or ``r >= k_m - 1``)
            uses all prototypes.
        generator (torch.Generator, optional): For drawing the negatives.

    Returns:
        torch.Tensor: ``(N, )`` losses.
    """
    losses = []
    for centers, concentration, positive in zip(prototypes, concentrations,
                                                assignments):
        logits = features @ centers.T / concentration[None, :]
        num_prototypes = centers.shape[0]
        if num_negatives is None or num_negatives >= num_prototypes - 1:
            negatives = None
        else:
            negatives = sample_negative_prototypes(positive, num_prototypes,
                                                   num_negatives, generator)
        positive_logit = logits.gather(1, positive[:, None]).squeeze(1)
        if negatives is None:
            denominator_logits = logits
        else:
            denominator_logits = torch.cat(
                [positive_logit[:, None],
                 logits.gather(1, negatives)], dim=1)
        losses.append(
            torch.logsumexp(denominator_logits, dim=1) - positive_logit)
    return torch.stack(losses).mean(dim=0)


@MODELS.register_module()
class ProtoNCELoss(nn.Module, NeedsPrototypes):
    r"""The prototype term of ProtoNCE (Li et al., ICLR 2021, Eq. 11).

    PCL clusters the momentum features of the whole training set ``M`` times
    (``k_1, ..., k_M`` clusters, redone every epoch after a warm-up by
    :class:`mmlt.PrototypeClusteringHook`) and pulls each embedding ``v``
    towards the prototype ``c_s`` of its cluster, with a per-cluster
    concentration ``phi`` as temperature:

    .. math::
        L = \frac{1}{M} \sum_{m=1}^{M} -\log
            \frac{\exp(v \cdot c_s^m / \phi_s^m)}
                 {\sum_{j=0}^{r} \exp(v \cdot c_j^m / \phi_j^m)}

    where the denominator holds the positive and ``r`` negative prototypes
    drawn uniformly per sample from the other ``k_m - 1`` (``num_negatives``;
    None: all of them). The full ProtoNCE loss of the paper is this term plus
    the instance InfoNCE term (:class:`InfoNCELoss` with the MoCo queue),
    which :class:`mmlt.PCL` adds.

    The module holds the clustering result as buffers, so it rides in the
    checkpoint: ``prototypes`` (unit vectors, the ``M`` clusterings stacked),
    ``concentrations``, ``assignments`` ``(M, N_data)`` (the cluster of every
    training sample, by dataset index) and ``clustering_epoch`` (-1 before
    the first clustering). Their sizes follow the data: loading a checkpoint
    resizes them. Until prototypes are set (the warm-up), the loss is 0 and
    still connected to the graph.

    OpenMMLab loss signature: ``pred`` are the embeddings and ``target`` the
    samples' dataset indices (``sample_idx``), which select their clusters.

    The paper's code draws the ``r`` negatives once per batch among the
    clusters that are no sample's positive and also lets the other samples'
    positives act as negatives; here each sample gets its own uniform draw,
    which is the formula above.

    Args:
        num_clusters (Sequence[int]): ``(k_1, ..., k_M)``; PCL uses
            (25000, 50000, 100000) on ImageNet.
        num_negatives (int, optional): ``r``; None contrasts against all
            prototypes. Defaults to None.
        temperature (float): ``tau``: the hook rescales the concentrations to
            mean ``tau``. Defaults to 0.2.
        normalize (bool): L2-normalise ``pred``. Defaults to True.
        loss_weight (float): Multiplies the loss. Defaults to 1.0.
        reduction (str): ``'none'``, ``'mean'`` or ``'sum'``. Defaults to
            ``'mean'``.

    Shape:
        - pred: ``(N, p)``.
        - target: ``(N, )`` dataset indices.
        - weight: ``(N, )``.
        - output: scalar, or ``(N, )`` with ``reduction='none'``.
    """

    _RESIZABLE_BUFFERS = ('prototypes', 'concentrations', 'assignments')

    def __init__(self,
                 num_clusters: Sequence[int],
                 num_negatives: Optional[int] = None,
                 temperature: float = 0.2,
                 normalize: bool = True,
                 loss_weight: float = 1.0,
                 reduction: str = 'mean') -> None:
        super().__init__()
        if isinstance(num_clusters, int):
            num_clusters = (num_clusters, )
        num_clusters = tuple(num_clusters)
        if not num_clusters or any(
                not isinstance(k, int) or isinstance(k, bool) or k < 2
                for k in num_clusters):
            raise ValueError(
                f'num_clusters={num_clusters}; expected a non-empty sequence '
                'of ints >= 2 (clusters per clustering).')
        if num_negatives is not None:  # None: all prototypes
            check_int('num_negatives', num_negatives)
        if not temperature > 0:
            raise ValueError(
                f'temperature={temperature}; expected a value > 0.')
        check_reduction(reduction)
        self.num_clusters = num_clusters
        self.num_negatives = num_negatives
        self.temperature = float(temperature)
        self.normalize = normalize
        self.loss_weight = loss_weight
        self.reduction = reduction
        self.register_buffer('prototypes', torch.zeros(0, 0))
        self.register_buffer('concentrations', torch.zeros(0))
        self.register_buffer(
            'assignments', torch.zeros(len(num_clusters), 0, dtype=torch.long))
        self.register_buffer('clustering_epoch',
                             torch.tensor(-1, dtype=torch.long))

    @property
    def has_prototypes(self) -> bool:
        """Whether a clustering has been set (False during the warm-up)."""
        # A shape, not a tensor value: no host sync in the step.
        return self.prototypes.numel() > 0

    @property
    def num_samples(self) -> int:
        """Training-set size of the current clustering (0 before one)."""
        return self.assignments.shape[1]

    def _cluster_slices(self) -> List[slice]:
        bounds, start = [], 0
        for k in self.num_clusters:
            bounds.append(slice(start, start + k))
            start += k
        return bounds

    @torch.no_grad()
    def set_prototypes(self,
                       prototypes: Sequence[torch.Tensor],
                       concentrations: Sequence[torch.Tensor],
                       assignments: Sequence[torch.Tensor],
                       epoch: int = 0) -> None:
        """Store a clustering of the training set (called by the hook).

        Args:
            prototypes (Sequence[torch.Tensor]): ``M`` tensors ``(k_m, p)``;
                L2-normalised here.
            concentrations (Sequence[torch.Tensor]): ``M`` tensors
                ``(k_m, )``, positive.
            assignments (Sequence[torch.Tensor]): ``M`` tensors ``(N_data, )``:
                the cluster of every training sample, in dataset order.
            epoch (int): The epoch the clustering was made for (>= 0).
        """
        num_clusterings = len(self.num_clusters)
        if not (len(prototypes) == len(concentrations) == len(assignments) ==
                num_clusterings):
            raise ValueError(f'got {len(prototypes)} prototype sets, '
                             f'{len(concentrations)} concentration sets and '
                             f'{len(assignments)} assignment sets; expected '
                             f'{num_clusterings} of each (num_clusters='
                             f'{self.num_clusters}).')
        if epoch < 0:
            raise ValueError(f'epoch={epoch}; expected an int >= 0.')
        feat_dim = prototypes[0].shape[-1]
        num_samples = assignments[0].shape[0]
        for k, centers, concentration, assignment in zip(
                self.num_clusters, prototypes, concentrations, assignments):
            if centers.shape != (k, feat_dim):
                raise ValueError(
                    f'prototypes have shape {tuple(centers.shape)}; expected '
                    f'({k}, {feat_dim}).')
            if concentration.shape != (k, ):
                raise ValueError(
                    f'concentrations have shape {tuple(concentration.shape)};'
                    f' expected ({k}, ).')
            if not (torch.isfinite(concentration).all() and
                    (concentration > 0).all()):
                raise ValueError(
                    'concentrations must be finite and positive, got min '
                    f'{float(concentration.min())}.')
            if assignment.shape != (num_samples, ):
                raise ValueError(
                    f'assignments have shape {tuple(assignment.shape)}; '
                    f'expected ({num_samples}, ), the same for every '
                    'clustering.')
            if num_samples and (int(assignment.min()) < 0
                                or int(assignment.max()) >= k):
                raise ValueError(
                    f'assignments must be in [0, {k - 1}], got '
                    f'[{int(assignment.min())}, {int(assignment.max())}].')
        device = self.clustering_epoch.device
        float_dtype = self.prototypes.dtype
        # New tensors (not in-place copies) because the sizes follow the data.
        self.prototypes = F.normalize(
            torch.cat([p.detach().to(device, float_dtype)
                       for p in prototypes]),
            dim=1)
        self.concentrations = torch.cat(
            [c.detach().to(device, float_dtype) for c in concentrations])
        self.assignments = torch.stack(
            [a.detach().to(device, torch.long) for a in assignments])
        self.clustering_epoch.fill_(int(epoch))

    def get_prototypes(self) -> List[dict]:
        """The stored clusterings, one dict per ``k_m`` (``prototypes``,
        ``concentrations``, ``assignments``); empty before the first."""
        if not self.has_prototypes:
            return []
        return [
            dict(
                prototypes=self.prototypes[rows],
                concentrations=self.concentrations[rows],
                assignments=self.assignments[m])
            for m, rows in enumerate(self._cluster_slices())
        ]

    def forward(self,
                pred: torch.Tensor,
                target: torch.Tensor,
                weight: Optional[torch.Tensor] = None,
                avg_factor: Optional[float] = None,
                reduction_override: Optional[str] = None) -> torch.Tensor:
        """Compute the prototype term for a batch.

        Args:
            pred (torch.Tensor): Embeddings ``(N, p)`` (the query encoder's,
                with gradient).
            target (torch.Tensor): Dataset indices ``(N, )`` of the samples.
            weight (torch.Tensor, optional): Per-sample weights ``(N, )``.
            avg_factor (float, optional): Divisor of the summed loss for
                ``reduction='mean'``.
            reduction_override (str, optional): Overrides ``self.reduction``.

        Returns:
            torch.Tensor: The weighted loss; 0 (connected to ``pred``) before
            the first clustering.
        """
        reduction = reduction_override or self.reduction
        check_unit_features('pred', pred)
        if target.dim() != 1 or target.shape[0] != pred.shape[0]:
            raise ValueError(
                f'target has shape {tuple(target.shape)}; expected '
                f'({pred.shape[0]}, ): one dataset index per sample.')
        if target.is_floating_point() or target.dtype == torch.bool:
            raise ValueError(f'target must hold integer dataset indices, got '
                             f'{target.dtype}.')
        compute_dtype = torch.promote_types(pred.dtype, torch.float32)
        features = pred.to(compute_dtype)
        if not self.has_prototypes:
            sample_loss = features.sum(dim=1) * 0.0
        else:
            if features.shape[1] != self.prototypes.shape[1]:
                raise ValueError(
                    f'pred has {features.shape[1]} dimensions; the '
                    f'prototypes have {self.prototypes.shape[1]}.')
            if self.normalize:
                features = F.normalize(features, dim=1)
            target = target.to(self.assignments.device).long()
            slices = self._cluster_slices()
            sample_loss = proto_nce(
                features,
                [self.prototypes[rows].to(compute_dtype) for rows in slices], [
                    self.concentrations[rows].to(compute_dtype)
                    for rows in slices
                ], [self.assignments[m, target] for m in range(len(slices))],
                num_negatives=self.num_negatives)
        return self.loss_weight * weight_reduce_loss(sample_loss, weight,
                                                     reduction, avg_factor)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict,
                              missing_keys, unexpected_keys, error_msgs):
        # The clustering's sizes (N_data, p) are only known once clustered:
        # take the checkpoint's sizes before the default shape check.
        for name in self._RESIZABLE_BUFFERS:
            incoming = state_dict.get(prefix + name)
            if isinstance(incoming, torch.Tensor):
                current = self._buffers[name]
                self._buffers[name] = current.new_empty(incoming.shape)
        super()._load_from_state_dict(state_dict, prefix, local_metadata,
                                      strict, missing_keys, unexpected_keys,
                                      error_msgs)
        rows = self.prototypes.shape[0]
        if rows not in (0, sum(self.num_clusters)) or \
                self.assignments.shape[0] != len(self.num_clusters) or \
                self.concentrations.shape[0] != rows:
            error_msgs.append(
                f'{prefix}: the checkpoint holds {rows} prototypes and '
                f'{self.assignments.shape[0]} clusterings, which do not match '
                f'num_clusters={self.num_clusters}.')

    def extra_repr(self) -> str:
        return (f'num_clusters={self.num_clusters}, '
                f'num_negatives={self.num_negatives}, '
                f'temperature={self.temperature}, '
                f'loss_weight={self.loss_weight}')
