"""InfoNCE and the decoupled contrastive loss.

References:
    - Oord et al., "Representation Learning with Contrastive Predictive
      Coding", arXiv 1807.03748 (InfoNCE); He et al., "Momentum Contrast for
      Unsupervised Visual Representation Learning", CVPR 2020 (the queue).
    - Yeh et al., "Decoupled Contrastive Learning", ECCV 2022.
"""
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from mmlt.registry import MODELS
from .utils import check_reduction, check_unit_features, weight_reduce_loss


def info_nce(query: torch.Tensor,
             positive_key: torch.Tensor,
             negative_keys: Optional[torch.Tensor] = None,
             temperature: float = 0.2,
             in_batch_negatives: bool = True,
             decoupled: bool = False) -> torch.Tensor:
    r"""Per-query InfoNCE (or decoupled contrastive) loss.

    With ``s_i = q_i . k_i / tau`` the positive logit and ``N(i)`` the
    negative logits ``q_i . n / tau``:

    .. math::
        L_i^{InfoNCE} = -s_i + \log\big(e^{s_i} + \sum_{n \in N(i)} e^{n}\big)
        \qquad
        L_i^{DCL} = -s_i + \log \sum_{n \in N(i)} e^{n}

    The negatives are ``negative_keys`` (e.g. a MoCo queue) and, with
    ``in_batch_negatives``, the other queries' positive keys.

    Args:
        query (torch.Tensor): ``(N, p)``.
        positive_key (torch.Tensor): ``(N, p)``.
        negative_keys (torch.Tensor, optional): ``(K, p)`` shared negatives.
        temperature (float): ``tau``. Defaults to 0.2.
        in_batch_negatives (bool): Use ``k_j, j != i`` as negatives of
            ``q_i``. Defaults to True.
        decoupled (bool): Leave the positive out of the denominator (DCL).
            Defaults to False.

    Returns:
        torch.Tensor: ``(N, )`` losses.
    """
    positive_logit = (query * positive_key).sum(dim=1) / temperature
    negative_logits = []
    if negative_keys is not None:
        negative_logits.append(query @ negative_keys.T / temperature)
    if in_batch_negatives:
        batch_logits = query @ positive_key.T / temperature
        diagonal = torch.eye(len(query), dtype=torch.bool, device=query.device)
        negative_logits.append(batch_logits.masked_fill(diagonal, -torch.inf))
    if decoupled:
        num_negatives = (0 if negative_keys is None else len(negative_keys)) \
            + (len(query) - 1 if in_batch_negatives else 0)
        if num_negatives == 0:
            raise ValueError(
                'the decoupled contrastive loss needs at least one negative: '
                'pass negative_keys or a batch of two or more with '
                'in_batch_negatives=True.')
        denominator_logits = torch.cat(negative_logits, dim=1)
    else:
        denominator_logits = torch.cat(
            [positive_logit[:, None]] + negative_logits, dim=1)
    return torch.logsumexp(denominator_logits, dim=1) - positive_logit


@MODELS.register_module()
class InfoNCELoss(nn.Module):
    r"""InfoNCE: classify the positive key of each query among negatives.

    .. math::
        L_i = -\log \frac{\exp(q_i \cdot k_i / \tau)}
              {\exp(q_i \cdot k_i / \tau) + \sum_{n} \exp(q_i \cdot n / \tau)}

    The negatives are the ``negatives`` passed to :meth:`forward` (a MoCo
    queue, He et al., CVPR 2020) and, with ``in_batch_negatives``, the other
    samples' keys (SimCLR/CLIP style). MoCo uses only the queue:
    ``in_batch_negatives=False``. In-batch negatives are the local batch's:
    they are not gathered over ranks.

    OpenMMLab loss signature: ``pred`` are the queries and ``target`` their
    positive keys.

    Args:
        temperature (float): ``tau > 0``. Defaults to 0.2 (MoCo v2, PCL).
        in_batch_negatives (bool): Contrast against the other keys of the
            batch. Defaults to True.
        normalize (bool): L2-normalise queries, keys and negatives inside the
            loss (idempotent for unit vectors). Defaults to True.
        loss_weight (float): Multiplies the loss. Defaults to 1.0.
        reduction (str): ``'none'``, ``'mean'`` or ``'sum'``. Defaults to
            ``'mean'``.

    Shape:
        - pred: ``(N, p)`` queries.
        - target: ``(N, p)`` positive keys.
        - negatives: ``(K, p)``.
        - weight: ``(N, )``.
        - output: scalar, or ``(N, )`` with ``reduction='none'``.
    """

    decoupled = False

    def __init__(self,
                 temperature: float = 0.2,
                 in_batch_negatives: bool = True,
                 normalize: bool = True,
                 loss_weight: float = 1.0,
                 reduction: str = 'mean') -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError(
                f'temperature={temperature}; expected a value > 0.')
        check_reduction(reduction)
        self.temperature = float(temperature)
        self.in_batch_negatives = in_batch_negatives
        self.normalize = normalize
        self.loss_weight = loss_weight
        self.reduction = reduction

    def forward(self,
                pred: torch.Tensor,
                target: torch.Tensor,
                weight: Optional[torch.Tensor] = None,
                avg_factor: Optional[float] = None,
                reduction_override: Optional[str] = None,
                negatives: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Compute the loss of every query.

        Args:
            pred (torch.Tensor): Queries ``(N, p)``.
            target (torch.Tensor): Their positive keys ``(N, p)``.
            weight (torch.Tensor, optional): Per-query weights ``(N, )``.
            avg_factor (float, optional): Divisor of the summed loss for
                ``reduction='mean'``.
            reduction_override (str, optional): Overrides ``self.reduction``.
            negatives (torch.Tensor, optional): Shared negatives ``(K, p)``,
                e.g. ``queue.T`` of MoCo (detached by the caller).

        Returns:
            torch.Tensor: The weighted loss.
        """
        reduction = reduction_override or self.reduction
        check_unit_features('pred (queries)', pred)
        check_unit_features('target (positive keys)', target)
        if target.shape != pred.shape:
            raise ValueError(
                f'target (positive keys) have shape {tuple(target.shape)}; '
                f'expected the shape of pred {tuple(pred.shape)}.')
        compute_dtype = torch.promote_types(pred.dtype, torch.float32)
        query, key = pred.to(compute_dtype), target.to(compute_dtype)
        if negatives is not None:
            check_unit_features('negatives', negatives)
            if negatives.shape[1] != pred.shape[1]:
                raise ValueError(
                    f'negatives have shape {tuple(negatives.shape)}; '
                    f'expected (K, {pred.shape[1]}).')
            negatives = negatives.to(compute_dtype)
        if self.normalize:
            query, key = F.normalize(query, dim=1), F.normalize(key, dim=1)
            if negatives is not None:
                negatives = F.normalize(negatives, dim=1)
        loss = info_nce(query, key, negatives, self.temperature,
                        self.in_batch_negatives, self.decoupled)
        return self.loss_weight * weight_reduce_loss(loss, weight, reduction,
                                                     avg_factor)

    def extra_repr(self) -> str:
        return (f'temperature={self.temperature}, '
                f'in_batch_negatives={self.in_batch_negatives}, '
                f'loss_weight={self.loss_weight}')


@MODELS.register_module()
class DecoupledContrastiveLoss(InfoNCELoss):
    r"""Decoupled contrastive loss (DCL, Yeh et al., ECCV 2022, Eq. 6).

    InfoNCE with the positive removed from the denominator, which removes the
    negative-positive coupling that makes InfoNCE's gradient shrink for easy
    positives and small batches:

    .. math::
        L_i = -q_i \cdot k_i / \tau
              + \log \sum_{n} \exp(q_i \cdot n / \tau)

    It can be negative. Arguments and shapes are those of
    :class:`InfoNCELoss`; at least one negative is required.
    """

    decoupled = True
