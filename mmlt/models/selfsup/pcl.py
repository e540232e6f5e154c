"""Prototypical Contrastive Learning (PCL) on MMPretrain's MoCo.

Reference:
    Li et al., "Prototypical Contrastive Learning of Unsupervised
    Representations", ICLR 2021.
"""
from typing import Dict, List, Optional, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmpretrain.models.selfsup import MoCo
from mmpretrain.models.utils import batch_shuffle_ddp, batch_unshuffle_ddp

from mmlt.engine.protocols import ExtractsClusteringFeatures
from mmlt.registry import MODELS


@MODELS.register_module()
class PCL(MoCo, ExtractsClusteringFeatures):
    """PCL: MoCo's instance contrast plus contrast against k-means prototypes.

    The M-step of PCL (Li et al., ICLR 2021, Eq. 11): a query embedding ``q``
    (encoder with gradient) is trained with

    - the instance term: InfoNCE of ``q`` against its momentum key ``k``
      and MoCo's queue of past keys (``instance_loss``,
      :class:`mmlt.InfoNCELoss`; :class:`mmlt.DecoupledContrastiveLoss`
      also fits);
    - the prototype term: ``(1 / M) sum_m`` of the cross entropy of ``q``
      against the prototypes of clustering ``m``, each prototype's logit
      divided by its concentration ``phi`` (``proto_loss``,
      :class:`mmlt.ProtoNCELoss`).

    The E-step (k-means of the momentum features of the whole training set,
    every epoch after a warm-up) is :class:`mmlt.PrototypeClusteringHook`,
    which calls :meth:`extract_clustering_features` and stores the result in
    ``proto_loss``. Until the first clustering the prototype term is 0 (the
    paper's InfoNCE-only warm-up). Samples are matched with their clusters by
    their dataset index, ``data_sample.sample_idx`` (packed by
    ``PackInputs`` by default).

    The clustering buffers of ``proto_loss`` are left out of DDP's
    per-iteration buffer broadcast (they are identical on every rank and can
    be large: ``sum(k) x p`` prototypes and ``M x N`` assignments).

    Args:
        backbone (dict): Backbone config.
        neck (dict): Projection neck config (e.g. ``MoCoV2Neck``).
        instance_loss (dict): Instance term. Defaults to
            ``dict(type='mmlt.InfoNCELoss', temperature=0.2,
            in_batch_negatives=False)``.
        proto_loss (dict): Prototype term; ``num_clusters`` is required.
            Defaults to ``dict(type='mmlt.ProtoNCELoss', num_clusters=(25000,
            50000, 100000), num_negatives=16000, temperature=0.2)``, the
            paper's ImageNet setting.
        queue_len (int): MoCo queue length (negatives of the instance term).
            Defaults to 16384 (the paper's code).
        feat_dim (int): Embedding dimension. Defaults to 128.
        momentum (float): ``1 - m`` of the momentum encoder update (0.001
            for the paper's ``m = 0.999``). Defaults to 0.001.
        head (dict, optional): Unused by PCL; accepted for MoCo
            compatibility. Defaults to None.
        pretrained (str, optional): Checkpoint to initialise from.
        data_preprocessor (dict, optional): Defaults to
            ``SelfSupDataPreprocessor``.
        init_cfg (dict | list[dict], optional): Initialisation config.
    """

    def __init__(self,
                 backbone: dict,
                 neck: dict,
                 instance_loss: Optional[dict] = None,
                 proto_loss: Optional[dict] = None,
                 queue_len: int = 16384,
                 feat_dim: int = 128,
                 momentum: float = 0.001,
                 head: Optional[dict] = None,
                 pretrained: Optional[str] = None,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[Union[List[dict], dict]] = None) -> None:
        super().__init__(
            backbone=backbone,
            neck=neck,
            head=head,
            queue_len=queue_len,
            feat_dim=feat_dim,
            momentum=momentum,
            pretrained=pretrained,
            data_preprocessor=data_preprocessor,
            init_cfg=init_cfg)
        if instance_loss is None:
            instance_loss = dict(
                type='mmlt.InfoNCELoss',
                temperature=0.2,
                in_batch_negatives=False)
        if proto_loss is None:
            proto_loss = dict(
                type='mmlt.ProtoNCELoss',
                num_clusters=(25000, 50000, 100000),
                num_negatives=16000,
                temperature=0.2)
        self.instance_loss = instance_loss if isinstance(
            instance_loss, nn.Module) else MODELS.build(instance_loss)
        self.proto_loss = proto_loss if isinstance(
            proto_loss, nn.Module) else MODELS.build(proto_loss)
        # Read by torch's DistributedDataParallel at construction.
        self._ddp_params_and_buffers_to_ignore = [
            f'proto_loss.{name}'
            for name, _ in self.proto_loss.named_buffers()
        ]

    @torch.no_grad()
    def extract_clustering_features(self, data_batch: dict) -> torch.Tensor:
        """L2-normalised momentum-encoder embeddings of a batch (for the
        clustering hook).

        Args:
            data_batch (dict): A collated batch (``inputs``,
                ``data_samples``) of the clustering dataloader; with several
                views only the first is used.

        Returns:
            torch.Tensor: ``(B, feat_dim)`` unit vectors.
        """
        data = self.data_preprocessor(data_batch, False)
        inputs = data['inputs']
        if isinstance(inputs, (list, tuple)):
            inputs = inputs[0]
        return F.normalize(self.encoder_k(inputs)[0], dim=1)

    @staticmethod
    def _sample_indices(data_samples, device) -> torch.Tensor:
        indices = []
        for data_sample in data_samples or []:
            index = getattr(data_sample, 'sample_idx', None)
            if index is None:
                raise ValueError(
                    'PCL needs the dataset index of every sample '
                    '(data_sample.sample_idx) to look up its cluster; keep '
                    "'sample_idx' in PackInputs' meta_keys.")
            indices.append(int(index))
        return torch.tensor(indices, dtype=torch.long, device=device)

    def loss(self, inputs: List[torch.Tensor], data_samples: list,
             **kwargs) -> Dict[str, torch.Tensor]:
        """Instance and prototype terms of a batch of two views.

        Args:
            inputs (list[torch.Tensor]): Two views ``(B, C, H, W)``: query
                and key.
            data_samples (list[DataSample]): With ``sample_idx``.

        Returns:
            dict[str, torch.Tensor]: ``loss_instance`` and ``loss_proto``
            (0 before the first clustering).
        """
        if not isinstance(inputs, (list, tuple)) or len(inputs) < 2:
            got = (f'{len(inputs)} view(s)' if isinstance(
                inputs, (list, tuple)) else f'a {type(inputs).__name__}')
            raise ValueError(
                'PCL takes two augmented views per image (MultiView with '
                f'num_views=2 in the pipeline), got {got}.')
        query_images, key_images = inputs[0], inputs[1]
        query = F.normalize(self.neck(self.backbone(query_images))[0], dim=1)
        with torch.no_grad():
            self.encoder_k.update_parameters(
                nn.Sequential(self.backbone, self.neck))
            # Shuffle across ranks so BatchNorm cannot leak the positive.
            key_images, unshuffle = batch_shuffle_ddp(key_images)
            key = F.normalize(self.encoder_k(key_images)[0], dim=1)
            key = batch_unshuffle_ddp(key, unshuffle)
        loss_instance = self.instance_loss(
            query, key, negatives=self.queue.clone().detach().T)
        loss_proto = self.proto_loss(
            query, self._sample_indices(data_samples, query.device))
        self._dequeue_and_enqueue(key)
        return dict(loss_instance=loss_instance, loss_proto=loss_proto)
