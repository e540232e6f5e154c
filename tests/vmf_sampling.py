"""Draw samples from a vMF distribution (Wood 1994): a test helper."""
from typing import Optional

import torch
from torch import Tensor

from mmlt.models.vmf.bessel import TensorOrFloat, as_float64
from mmlt.models.vmf.vmf import _check_dimension, _describe


def sample_vmf(mu: Tensor,
               kappa: TensorOrFloat,
               num_samples: int,
               generator: Optional[torch.Generator] = None) -> Tensor:
    """Draw samples from vMF(mu, kappa) with Wood's rejection algorithm.

    Wood, "Simulation of the von Mises Fisher distribution", Commun. Stat.
    Simul. Comput. 1994. The component ``w = mu . z`` is drawn by rejection
    from ``w = (1 - (1 + b) Z) / (1 - (1 - b) Z)``,
    ``Z ~ Beta((p-1)/2, (p-1)/2)``, ``b = (p - 1) / (2 kappa +
    sqrt(4 kappa^2 + (p - 1)^2))``; the tangent part is uniform. All draws of
    a round are vectorised; rounds repeat only for the (rare) rejected draws,
    which needs a host sync per round (this is a test and analysis tool, not a
    training-step function). ``kappa = 0`` gives the uniform distribution.

    Args:
        mu (Tensor): Unit mean directions.
        kappa (Tensor | float): Concentrations >= 0, broadcastable to
            ``mu.shape[:-1]``.
        num_samples (int): Samples per distribution.
        generator (torch.Generator, optional): Random generator. Defaults to
            None (the global one).

    Returns:
        Tensor: Unit samples in the floating dtype of ``mu``.

    Shape:
        - mu: (..., p). kappa: broadcastable to (...).
        - Output: (num_samples, ..., p).
    """
    if not isinstance(mu, Tensor) or mu.dim() < 1:
        raise ValueError(f'mu must be a (..., p) tensor, got {_describe(mu)}')
    p = _check_dimension(mu.shape[-1])
    if isinstance(num_samples,
                  bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(
            f'num_samples must be an int >= 1, got {num_samples!r}')
    kappa64, _ = as_float64(kappa, 'kappa', mu.device)
    out_dtype = mu.dtype if mu.is_floating_point() else torch.float64
    mu64 = mu.detach().to(torch.float64)
    batch_shape = mu.shape[:-1]
    shape = (num_samples, ) + tuple(batch_shape)
    kappa64 = kappa64.detach().to(
        mu64.device).expand(batch_shape).expand(shape)
    dof = p - 1
    b = dof / (2 * kappa64 + torch.sqrt(4 * kappa64 * kappa64 + dof * dof))

    def gaussian(size):
        return torch.randn(
            size, generator=generator, dtype=torch.float64, device=mu64.device)

    w = torch.zeros(shape, dtype=torch.float64, device=mu64.device)
    one_minus_w2 = torch.zeros_like(w)
    pending = torch.ones(shape, dtype=torch.bool, device=mu64.device)
    proposals_per_round = 4
    while bool(pending.any()):
        # Z ~ Beta(dof/2, dof/2) is (1 + u) / 2 with u the first coordinate
        # of a uniform point on S^{p-1}; this keeps `generator` usable.
        g = gaussian((proposals_per_round, ) + shape + (p, ))
        u = g[..., 0] / g.norm(dim=-1)
        beta = (1 + u) / 2
        uniform = torch.rand(
            (proposals_per_round, ) + shape,
            generator=generator,
            dtype=torch.float64,
            device=mu64.device)
        denominator = 1 - (1 - b) * beta
        w_proposal = (1 - (1 + b) * beta) / denominator
        # 1 - w^2 and the log acceptance ratio in cancellation-free forms.
        one_minus_w2_proposal = 4 * b * beta * (1 - beta) / denominator**2
        x0 = (1 - b) / (1 + b)
        log_accept = kappa64 * (w_proposal - x0) + dof * torch.log(
            (1 + b) / (2 * denominator))
        accepted = log_accept >= torch.log(uniform)
        # First accepted proposal of each pending draw.
        any_accepted = accepted.any(dim=0)
        first = accepted.to(torch.uint8).argmax(dim=0, keepdim=True)
        chosen_w = w_proposal.gather(0, first)[0]
        chosen_one_minus_w2 = one_minus_w2_proposal.gather(0, first)[0]
        take = pending & any_accepted
        w = torch.where(take, chosen_w, w)
        one_minus_w2 = torch.where(take, chosen_one_minus_w2, one_minus_w2)
        pending = pending & ~any_accepted
    tangent = gaussian(shape + (p, ))
    tangent = tangent - (tangent * mu64).sum(-1, keepdim=True) * mu64
    tangent = tangent / tangent.norm(dim=-1, keepdim=True)
    samples = w.unsqueeze(-1) * mu64 + torch.sqrt(
        one_minus_w2.clamp(min=0)).unsqueeze(-1) * tangent
    return samples.to(out_dtype)


