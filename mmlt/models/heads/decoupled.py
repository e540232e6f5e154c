"""The classifier adjustments of decoupled training (Kang et al., ICLR 2020).

Kang et al., "Decoupling Representation and Classifier for Long-Tailed
Recognition", ICLR 2020: a backbone and a linear classifier ``W`` (rows
``w_i``, one per class) are trained jointly with instance-balanced
sampling; then, with the backbone frozen, the classifier is rebalanced by

* cRT: re-training ``W`` (and ``b``) from scratch with class-balanced
  sampling (no new code: a fresh linear layer and
  :class:`mmlt.ClassAwareSampler`);
* tau-norm: ``w~_i = w_i / ||w_i||^tau`` (:func:`tau_normalize`), post hoc,
  ``tau`` chosen on a validation split;
* LWS: ``w~_i = f_i * w_i`` with learnable per-class scales ``f``
  (:class:`LearnableWeightScaling`), ``W`` frozen, trained with
  class-balanced sampling.

Pure torch; the MMPretrain head that uses them is
:class:`mmlt.integrations.mmpretrain.DecoupledClsHead`.
"""
from typing import Union

import torch
import torch.nn as nn


def tau_normalize(weight: torch.Tensor,
                  tau: Union[float, torch.Tensor],
                  eps: float = 1e-12) -> torch.Tensor:
    """Classifier rows divided by their L2 norm to the power ``tau``.

    ``w~_i = w_i / ||w_i||^tau`` (Kang et al., ICLR 2020, Sec. 4): tau 0 is
    the classifier itself, tau 1 gives unit rows (a cosine classifier up to
    the feature norm); in between, the large rows of the head classes shrink
    more than the small rows of the tail classes. A zero row stays zero.

    Args:
        weight (Tensor): Classifier rows.
        tau (float | Tensor): The exponent, usually in [0, 2]; a 0-dim tensor
            (a buffer) avoids a host sync.
        eps (float): Lower bound of a row norm. Defaults to 1e-12.

    Shape:
        - weight: ``(C, d)``; output: ``(C, d)``.
    """
    norms = weight.norm(dim=1, keepdim=True).clamp_min(eps)
    if isinstance(tau, torch.Tensor):
        tau = tau.to(weight.dtype)
    return weight / norms.pow(tau)


class LearnableWeightScaling(nn.Module):
    """Per-class logit scales ``f`` of LWS (Kang et al., ICLR 2020).

    ``f_i * (w_i . x + b_i)``: scaling row ``i`` (and its bias) of a frozen
    classifier by ``f_i``. Initialised to 1, so it starts as the classifier
    it scales.

    Args:
        num_classes (int): Number of classes C.

    Shape:
        - logits: ``(N, C)``; output: ``(N, C)``.
    """

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.scales = nn.Parameter(torch.ones(num_classes))

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        return logits * self.scales
