"""The contrastive branch shared by the classification and RoI box heads."""
from typing import List, Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from mmlt.registry import MODELS
from mmlt.utils.seeding import branch_random_stream


def build_mlp(dims: Sequence[int], norm: bool = True) -> nn.Sequential:
    """Linear(-BN)-ReLU blocks ending with a plain Linear layer."""
    layers: List[nn.Module] = []
    for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
        last = i == len(dims) - 2
        layers.append(nn.Linear(d_in, d_out, bias=last or not norm))
        if not last:
            if norm:
                layers.append(nn.BatchNorm1d(d_out))
            layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def build_contrast_loss(cfg: Union[dict, nn.Module], num_classes: int,
                        feat_dim: int,
                        contrast_weight: Optional[float] = None) -> nn.Module:
    """Build a contrastive loss, filling in what it declares it needs.

    A loss class that sets ``needs_num_classes`` / ``needs_feat_dim`` gets
    ``num_classes`` / ``feat_dim`` unless the config gives them. The one
    weight of the term is the loss's ``loss_weight``; the heads' older
    ``contrast_weight`` key sets it (an error if both are given).
    """
    if isinstance(cfg, nn.Module):
        if contrast_weight is not None:
            raise ValueError('contrast_weight needs a loss config; set '
                             'loss_weight on the loss module instead')
        return cfg
    cfg = dict(cfg)
    loss_cls = MODELS.get(cfg['type']) if isinstance(cfg['type'],
                                                     str) else cfg['type']
    if loss_cls is None:
        raise KeyError(f'loss type {cfg["type"]!r} is not registered; mmlt '
                       "losses are named 'mmlt.ProCoLoss', 'mmlt.BCLLoss', "
                       "'mmlt.SupConLoss'")
    if getattr(loss_cls, 'needs_num_classes', False):
        cfg.setdefault('num_classes', num_classes)
    if getattr(loss_cls, 'needs_feat_dim', False):
        cfg.setdefault('feat_dim', feat_dim)
    if contrast_weight is not None:
        if 'loss_weight' in cfg:
            raise ValueError(
                f'both contrast_weight={contrast_weight} (head) and '
                f'contrast_loss.loss_weight={cfg["loss_weight"]} are set; '
                'keep only contrast_loss.loss_weight')
        if not contrast_weight >= 0:
            raise ValueError(
                f'contrast_weight must be >= 0, got {contrast_weight!r}')
        cfg['loss_weight'] = float(contrast_weight)
    return MODELS.build(cfg)


@MODELS.register_module()
class ContrastiveBranch(nn.Module):
    """Projector, optional prototype MLP and contrastive loss of a head.

    The branch of ProCo (Du et al., TPAMI 2024), BCL (Zhu et al., CVPR 2022)
    and SupCon (Khosla et al., NeurIPS 2020)::

        z = normalize(projector(h))                  # (V*N, p) -> (V, N, p)
        prototypes = normalize(prototype_mlp(W))     # only if the loss needs
        loss = contrast_loss(z, y[, prototypes])     # times its loss_weight

    ``h`` are the rows of all contrastive views stacked view-major (rows
    ``[v*N, (v+1)*N)`` are view ``v``), the layout the losses take as
    ``(V, N, p)``. A loss that sets ``needs_prototypes = True`` (BCL) gets
    class prototypes computed from the classifier rows ``W``.

    Paired seeds: the branch is built on its own random stream
    (:func:`mmlt.utils.seeding.branch_random_stream`), so a model with the
    branch and the same model without it, built and initialised after one
    seed, have equal weights in every module they share. The branch's layers
    have no ``init_cfg``; a head ``init_cfg`` that matched their layer type
    would draw for them in ``init_weights`` and break the pairing.

    Args:
        in_channels (int): Size of ``h``.
        num_classes (int): Number of classes ``C``.
        loss (dict | nn.Module): The contrastive loss.
        proj_dims (Sequence[int]): Hidden and output sizes of the projector.
        norm (bool): BatchNorm in the MLPs (off for RoI heads, where a rank
            may have one or no foreground RoI). Defaults to True.
        proto_dims (Sequence[int], optional): The prototype MLP's sizes,
            from the classifier input size to ``proj_dims[-1]``. Defaults to
            ``(classifier_channels,) + proj_dims``.
        classifier_channels (int, optional): Size of a classifier row ``W_c``.
            Defaults to ``in_channels``.
        contrast_weight (float, optional): Sets the loss's ``loss_weight``
            (older configs' key). Defaults to None.
    """

    def __init__(self,
                 in_channels: int,
                 num_classes: int,
                 loss: Union[dict, nn.Module],
                 proj_dims: Sequence[int] = (2048, 1024),
                 norm: bool = True,
                 proto_dims: Optional[Sequence[int]] = None,
                 classifier_channels: Optional[int] = None,
                 contrast_weight: Optional[float] = None) -> None:
        super().__init__()
        # Paired seeds: the branch draws from its own stream, so the modules
        # built and initialised after it get the weights they get without it.
        with branch_random_stream():
            self._build(in_channels, num_classes, loss, proj_dims, norm,
                        proto_dims, classifier_channels, contrast_weight)

    def _build(self, in_channels, num_classes, loss, proj_dims, norm,
               proto_dims, classifier_channels, contrast_weight) -> None:
        """The projector, the loss and (BCL) the prototype MLP."""
        proj_dims = tuple(int(dim) for dim in proj_dims)
        if len(proj_dims) < 1 or min(proj_dims) < 1:
            raise ValueError(f'proj_dims={proj_dims}; expected positive '
                             'sizes ending with the contrastive dimension')
        self.feat_dim = proj_dims[-1]
        self.projector = build_mlp((in_channels, ) + proj_dims, norm=norm)
        self.loss = build_contrast_loss(loss, num_classes, self.feat_dim,
                                        contrast_weight)
        self.prototype_mlp = None
        if getattr(self.loss, 'needs_prototypes', False):
            classifier_channels = classifier_channels or in_channels
            dims = tuple(proto_dims) if proto_dims else (
                (classifier_channels, ) + proj_dims)
            if dims[0] != classifier_channels or dims[-1] != self.feat_dim:
                raise ValueError(
                    f'proto_dims={dims} must start at the classifier input '
                    f'size {classifier_channels} and end at the contrastive '
                    f'dimension {self.feat_dim}')
            self.prototype_mlp = build_mlp(dims, norm=norm)

    def project(self, feats: torch.Tensor) -> torch.Tensor:
        """Unit contrastive features ``normalize(projector(h))``,
        ``(M, p)``."""
        return F.normalize(self.projector(feats), dim=1)

    def forward(self,
                feats: torch.Tensor,
                labels: torch.Tensor,
                num_views: int = 1,
                classifier_weight: Optional[torch.Tensor] = None,
                **loss_kwargs) -> torch.Tensor:
        """The weighted contrastive loss.

        Args:
            feats (Tensor): ``(V*N, in_channels)``, view-major.
            labels (Tensor): ``(N,)``.
            num_views (int): ``V``.
            classifier_weight (Tensor, optional): Classifier rows ``(C, d)``
                for losses that need prototypes.
            **loss_kwargs: Passed to the loss, e.g. ProCo's per-sample
                ``weight`` and ``avg_factor``.

        Returns:
            Tensor: The loss, already multiplied by its ``loss_weight``.
        """
        z = self.project(feats)
        z = z.view(num_views, z.shape[0] // num_views, self.feat_dim)
        extra = {}
        if self.prototype_mlp is not None:
            if classifier_weight is None:
                raise ValueError(f'{type(self.loss).__name__} needs class '
                                 'prototypes: pass classifier_weight')
            extra['prototypes'] = F.normalize(
                self.prototype_mlp(classifier_weight), dim=1)
        return self.loss(z, labels, **extra, **loss_kwargs)


def rename_legacy_branch_keys(state_dict: dict, prefix: str,
                              branch_name: str) -> None:
    """Map checkpoints written before the branch existed onto it, in place.

    Those heads held ``projector``, ``prototype_mlp`` and ``contrast_loss``
    themselves; they now live in ``<branch_name>.{projector, prototype_mlp,
    loss}``.
    """
    moves = (('projector.', 'projector.'),
             ('prototype_mlp.', 'prototype_mlp.'), ('contrast_loss.',
                                                     'loss.'))
    for key in list(state_dict):
        for old, new in moves:
            if key.startswith(prefix + old):
                state_dict[f'{prefix}{branch_name}.{new}' +
                           key[len(prefix + old):]] = state_dict.pop(key)
                break
