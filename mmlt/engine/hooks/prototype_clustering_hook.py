"""Cluster the training set's momentum features into prototypes (PCL's E-step).
"""
import copy
import time
from typing import List, Optional, Sequence, Tuple

import torch
import torch.distributed as torch_dist
import torch.nn.functional as F
from mmengine.dist import get_dist_info
from mmengine.hooks import Hook

from mmlt.engine.protocols import ExtractsClusteringFeatures, NeedsPrototypes
from mmlt.models.utils.dist_utils import (gather_batch_sizes, gather_no_grad,
                                          is_distributed)
from mmlt.models.selfsup.kmeans import estimate_concentration, kmeans
from mmlt.registry import HOOKS
from mmlt.utils.validation import check_int

_KMEANS_OPTIONS = ('num_iters', 'num_restarts', 'spherical', 'init', 'backend',
                   'chunk_size', 'faiss_kwargs')


@HOOKS.register_module()
class PrototypeClusteringHook(Hook):
    """Run k-means on the whole training set and hand the prototypes over.

    The E-step of Prototypical Contrastive Learning (Li et al., ICLR 2021):
    before each training epoch from ``warmup_epochs`` on (every ``interval``
    epochs), the hook

    1. runs every rank's shard of the clustering dataloader through the
       model's ``extract_clustering_features(data_batch)`` (PCL: the
       L2-normalised momentum-encoder embeddings of un-augmented images), in
       eval mode and without gradient;
    2. gathers the features with their dataset indices, so every rank holds
       the ``(N, p)`` matrix in dataset order;
    3. for every ``k`` in the targets' ``num_clusters``, runs
       :func:`mmlt.models.selfsup.kmeans.kmeans` (faiss when installed and
       ``backend='auto'``, torch otherwise) on one rank (clustering ``m`` on
       rank ``m % world_size``) and estimates the concentrations
       (:func:`mmlt.models.selfsup.kmeans.estimate_concentration`: alpha,
       percentile clipping, mean ``tau``). Every rank first computes all the
       clusterings it owns, concurrently with the other ranks; then the
       centroids, concentrations and assignments of each clustering are
       broadcast from its owner, so that every rank gets exactly the same
       result. With ``M`` clusterings on ``W`` ranks the wall time is that
       of ``ceil(M / W)`` k-means runs, and a rank waits in a collective for
       at most the slowest rank's share: the distributed timeout
       (``env_cfg.dist_cfg.timeout``) must exceed that;
    4. calls ``set_prototypes(prototypes, concentrations, assignments,
       epoch)`` on every module of the model that has it (e.g.
       :class:`mmlt.ProtoNCELoss`).

    Modules are found by protocol (``isinstance`` over ``model.modules()``:
    :class:`~mmlt.engine.protocols.NeedsPrototypes`,
    :class:`~mmlt.engine.protocols.ExtractsClusteringFeatures`), not by path.
    The clustering lives in the target's buffers, so checkpoints carry it;
    an epoch whose clustering is already in the model (its
    ``clustering_epoch``, e.g. after resuming) is not clustered again.

    The clustering dataloader must list the training samples in the order of
    the training dataset (its indices are the ``sample_idx`` the loss looks
    up): the same dataset with a deterministic pipeline (the paper uses a
    center crop). When ``dataloader`` is None the training dataset is used
    as it is (with its augmentations and collate function).

    Args:
        warmup_epochs (int): Epochs trained before the first clustering (the
            paper's 20 on ImageNet: InfoNCE only). Defaults to 0.
        interval (int): Cluster every ``interval`` epochs. Defaults to 1.
        dataloader (dict, optional): Dataloader config (``dataset``,
            ``batch_size``, ``num_workers``, ``collate_fn`` ...) for the
            feature extraction; its sampler is replaced by a sequential shard
            per rank. Defaults to None (the training dataset).
        kmeans_cfg (dict, optional): Options of
            :func:`mmlt.models.selfsup.kmeans.kmeans`: ``num_iters``,
            ``num_restarts``, ``spherical``, ``init``, ``backend``,
            ``chunk_size``, ``faiss_kwargs``. Defaults to
            ``dict(backend='auto')``.
        alpha (float): Concentration smoothing ``alpha``. Defaults to 10.
        clip_percentiles (Sequence[float], optional): Percentiles ``phi`` is
            clipped to. Defaults to (10, 90).
        temperature (float, optional): Mean of ``phi`` after rescaling;
            None takes each target's ``temperature``. Defaults to None.
        seed (int): Base seed of k-means; clustering ``m`` of epoch ``e``
            uses ``seed + e * M + m``. Defaults to 0.
    """

    priority = 'NORMAL'

    def __init__(self,
                 warmup_epochs: int = 0,
                 interval: int = 1,
                 dataloader: Optional[dict] = None,
                 kmeans_cfg: Optional[dict] = None,
                 alpha: float = 10.0,
                 clip_percentiles: Optional[Sequence[float]] = (10.0, 90.0),
                 temperature: Optional[float] = None,
                 seed: int = 0) -> None:
        check_int('warmup_epochs', warmup_epochs, 0)
        check_int('interval', interval)
        kmeans_cfg = dict(
            backend='auto') if kmeans_cfg is None else dict(kmeans_cfg)
        unknown = set(kmeans_cfg) - set(_KMEANS_OPTIONS)
        if unknown:
            raise ValueError(
                f'kmeans_cfg has unknown options {sorted(unknown)}; expected '
                f'some of {_KMEANS_OPTIONS}.')
        if dataloader is not None and not isinstance(dataloader, dict):
            raise ValueError(f'dataloader must be a config dict or None, got '
                             f'{type(dataloader).__name__}.')
        if temperature is not None and not temperature > 0:
            raise ValueError(
                f'temperature={temperature}; expected a value > 0 or None.')
        self.warmup_epochs = warmup_epochs
        self.interval = interval
        self.dataloader_cfg = dataloader
        self.kmeans_cfg = kmeans_cfg
        self.alpha = alpha
        self.clip_percentiles = clip_percentiles
        self.temperature = temperature
        self.seed = seed
        self._dataloader = None

    # ------------------------------------------------------------------
    # protocol
    # ------------------------------------------------------------------
    @staticmethod
    def targets(model) -> list:
        """Modules declaring :class:`~mmlt.engine.protocols.NeedsPrototypes`
        (e.g. :class:`ProtoNCELoss`)."""
        return [
            m for m in model.modules()
            if isinstance(m, NeedsPrototypes)
        ]

    @staticmethod
    def feature_extractor(model):
        """The first module with ``extract_clustering_features``."""
        for module in model.modules():
            if isinstance(module, ExtractsClusteringFeatures):
                return module
        raise ValueError(
            f'{type(model).__name__} has no module declaring '
            'ExtractsClusteringFeatures (extract_clustering_features('
            'data_batch)); PrototypeClusteringHook'
            ' needs one (e.g. mmlt.PCL) to embed the training set.')

    def _num_clusters(self, targets) -> Tuple[int, ...]:
        if not targets:
            raise ValueError(
                'the model has no module with set_prototypes(...) (e.g. '
                'mmlt.ProtoNCELoss); PrototypeClusteringHook has nothing to '
                'update.')
        num_clusters = {tuple(t.num_clusters) for t in targets}
        if len(num_clusters) != 1:
            raise ValueError(
                f'the modules with set_prototypes ask for different '
                f'clusterings {sorted(num_clusters)}; expected one.')
        return num_clusters.pop()

    def _mean_concentration(self, targets) -> float:
        if self.temperature is not None:
            return self.temperature
        temperatures = {float(t.temperature) for t in targets}
        if len(temperatures) != 1:
            raise ValueError(
                f'the targets have different temperatures '
                f'{sorted(temperatures)}; set the hook\'s temperature.')
        return temperatures.pop()

    # ------------------------------------------------------------------
    # hook points
    # ------------------------------------------------------------------
    def before_train(self, runner) -> None:
        from mmengine.runner import EpochBasedTrainLoop
        if not isinstance(runner.train_loop, EpochBasedTrainLoop):
            loop = type(runner.train_loop).__name__
            raise ValueError(
                'PrototypeClusteringHook clusters at epoch boundaries and '
                'needs an epoch-based training loop (train_cfg=dict('
                f'by_epoch=True, ...)), got {loop}.')
        self._num_clusters(self.targets(runner.model))
        self.feature_extractor(runner.model)

    def before_train_epoch(self, runner) -> None:
        epoch = runner.epoch
        if epoch < self.warmup_epochs or \
                (epoch - self.warmup_epochs) % self.interval != 0:
            return
        targets = self.targets(runner.model)
        if targets and all(
                int(getattr(t, 'clustering_epoch', -1)) == epoch
                for t in targets):
            return  # restored from a checkpoint of this epoch
        self.cluster(runner)

    # ------------------------------------------------------------------
    # the clustering
    # ------------------------------------------------------------------
    def _build_dataloader(self, runner):
        from mmengine.dataset import DefaultSampler
        from mmengine.registry import DATASETS
        from mmengine.runner import Runner
        from torch.utils.data import DataLoader
        if self._dataloader is not None:
            return self._dataloader
        if self.dataloader_cfg is None:
            train_loader = runner.train_dataloader
            dataset = train_loader.dataset
            self._dataloader = DataLoader(
                dataset,
                # None when the training loader uses a batch sampler.
                batch_size=train_loader.batch_size or 32,
                sampler=DefaultSampler(dataset, shuffle=False, round_up=False),
                num_workers=train_loader.num_workers,
                collate_fn=train_loader.collate_fn)
            return self._dataloader
        cfg = copy.deepcopy(self.dataloader_cfg)
        dataset = cfg.pop('dataset')
        if isinstance(dataset, dict):
            dataset = DATASETS.build(dataset)
            if hasattr(dataset, 'full_init'):
                dataset.full_init()
        train_loader = getattr(runner, 'train_dataloader', None)
        train_dataset = getattr(train_loader, 'dataset', None)
        if train_dataset is not None and len(train_dataset) != len(dataset):
            raise ValueError(
                f'the clustering dataset has {len(dataset)} samples and the '
                f'training dataset {len(train_dataset)}; they must be the '
                'same samples in the same order.')
        # A sequential shard per rank without padding: every sample once.
        cfg['sampler'] = DefaultSampler(dataset, shuffle=False, round_up=False)
        cfg['drop_last'] = False
        cfg.pop('batch_sampler', None)
        cfg['dataset'] = dataset
        self._dataloader = Runner.build_dataloader(cfg)
        return self._dataloader

    @torch.no_grad()
    def extract_features(self, runner) -> torch.Tensor:
        """Features of the whole clustering dataset, in dataset order, on
        every rank.

        Returns:
            torch.Tensor: ``(N, p)``, on the model's output device.
        """
        model = runner.model
        extractor = self.feature_extractor(model)
        dataloader = self._build_dataloader(runner)
        shard = [int(i) for i in iter(dataloader.sampler)]
        was_training = model.training
        model.eval()
        try:
            batches = [
                extractor.extract_clustering_features(data_batch).detach()
                for data_batch in dataloader
            ]
        finally:
            model.train(was_training)
        num_samples = len(dataloader.dataset)
        if not batches:
            raise ValueError(
                f'rank {get_dist_info()[0]} got no sample to embed: the '
                f'clustering dataset has {num_samples} samples; it needs at '
                'least one per rank.')
        local_features = torch.cat(batches)
        if local_features.dim() != 2 or local_features.shape[0] != len(shard):
            raise ValueError(
                'extract_clustering_features returned '
                f'{tuple(local_features.shape)} for {len(shard)} samples; '
                'expected one (p, ) feature per sample.')
        local_indices = torch.tensor(
            shard, dtype=torch.long, device=local_features.device)
        sizes = gather_batch_sizes(local_features)
        all_features = gather_no_grad(local_features, sizes)
        all_indices = gather_no_grad(local_indices, sizes)
        coverage = torch.bincount(all_indices, minlength=num_samples)
        if coverage.shape[0] != num_samples or not (coverage == 1).all():
            raise RuntimeError(
                'the ranks\' shards do not cover every sample exactly once; '
                'the clustering sampler must be a sequential per-rank shard.')
        features = all_features.new_empty(num_samples, all_features.shape[1])
        features[all_indices] = all_features
        return features

    def _cluster_one(self, features: torch.Tensor, num_clusters: int,
                     seed: int, mean_concentration: float):
        result = kmeans(features, num_clusters, seed=seed, **self.kmeans_cfg)
        concentration = estimate_concentration(
            features,
            result.centroids,
            result.assignments,
            alpha=self.alpha,
            clip_percentiles=self.clip_percentiles,
            mean_concentration=mean_concentration)
        prototypes = F.normalize(result.centroids, dim=1)
        inertia = torch.tensor([result.inertia],
                               dtype=torch.float64,
                               device=features.device)
        return prototypes, concentration, result.assignments, inertia

    @staticmethod
    def _empty_outputs(features: torch.Tensor, num_clusters: int):
        """Receive buffers shaped and typed like :meth:`_cluster_one`'s
        outputs for ``num_clusters`` clusters of ``features``."""
        num_samples, feat_dim = features.shape
        # kmeans clusters half-precision features in float32.
        centroid_dtype = torch.float32 if features.dtype in (
            torch.float16, torch.bfloat16) else features.dtype
        return (features.new_empty(num_clusters, feat_dim,
                                   dtype=centroid_dtype),
                features.new_empty(num_clusters),
                features.new_empty(num_samples, dtype=torch.long),
                features.new_empty(1, dtype=torch.float64))

    def cluster(self, runner) -> List[dict]:
        """Cluster now and update every target (all ranks must call this).

        Returns:
            list[dict]: Per clustering: ``prototypes``, ``concentrations``,
            ``assignments`` and ``inertia``, identical on every rank.
        """
        start = time.time()
        epoch = runner.epoch
        targets = self.targets(runner.model)
        num_clusters = self._num_clusters(targets)
        mean_concentration = self._mean_concentration(targets)
        features = self.extract_features(runner)
        num_samples = features.shape[0]
        rank, world_size = get_dist_info()
        # The seeds and inputs of clustering m do not depend on which rank
        # runs it or when, so the result is the same for any world size.
        seeds = [
            self.seed + epoch * len(num_clusters) + m
            for m in range(len(num_clusters))
        ]
        # 1. Every rank runs the clusterings it owns, all of them before any
        # collective: the ranks work in parallel.
        owned = {
            m: self._cluster_one(features, k, seeds[m], mean_concentration)
            for m, k in enumerate(num_clusters) if m % world_size == rank
        }
        # 2. Each clustering goes from its owner to every other rank; the
        # receivers know the shapes (k from the config, N from the dataset).
        results = []
        for m, k in enumerate(num_clusters):
            outputs = owned.get(m)
            if outputs is None:
                outputs = self._empty_outputs(features, k)
            if is_distributed():
                for tensor in outputs:
                    torch_dist.broadcast(tensor, src=m % world_size)
            prototypes, concentration, assignments, inertia = outputs
            results.append(
                dict(
                    prototypes=prototypes,
                    concentrations=concentration,
                    assignments=assignments,
                    inertia=float(inertia)))
        for target in targets:
            target.set_prototypes([r['prototypes'] for r in results],
                                  [r['concentrations'] for r in results],
                                  [r['assignments'] for r in results],
                                  epoch=epoch)
        self._log(runner, epoch, num_samples, results, time.time() - start)
        return results

    @staticmethod
    def _log(runner, epoch, num_samples, results, seconds) -> None:
        logger = getattr(runner, 'logger', None)
        if logger is None:
            return
        parts = []
        for result in results:
            k = result['prototypes'].shape[0]
            used = int((torch.bincount(result['assignments'], minlength=k)
                        > 0).sum())
            phi = result['concentrations']
            parts.append(
                f'k={k}: {used} non-empty, inertia '
                f'{result["inertia"]:.4g}, phi [{float(phi.min()):.4g}'
                f', {float(phi.max()):.4g}]')
        logger.info(f'PrototypeClusteringHook: epoch {epoch}, {num_samples} '
                    f'samples clustered in {seconds:.1f} s; ' +
                    '; '.join(parts))
