"""PrototypeClusteringHook: three clusterings split over two gloo ranks give
the single-process result, and a real mmengine Runner saves and resumes the
clustering."""
import copy
import time
from types import SimpleNamespace

import pytest
import torch
import torch.distributed as torch_dist
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModel
from torch.utils.data import Dataset

from mmlt.engine.hooks import PrototypeClusteringHook
from mmlt.engine.protocols import ExtractsClusteringFeatures
from mmlt.models.losses import ProtoNCELoss
from mmlt.models.selfsup.kmeans import estimate_concentration, kmeans

from dist_launch import init_gloo, run_two_ranks

NUM_CLUSTERS = (3, 5)
KMEANS_CFG = dict(backend='torch', num_iters=10, num_restarts=2)


class ToyDataset(Dataset):
    """Points around 5 centres; item ``i`` carries its index."""

    def __init__(self, num_samples=37, dim=6, seed=0):
        generator = torch.Generator().manual_seed(seed)
        centres = torch.randn(5, dim, generator=generator) * 3
        labels = torch.arange(num_samples) % 5
        self.data = centres[labels] + 0.3 * torch.randn(
            num_samples, dim, generator=generator)

    def __len__(self):
        return len(self.data)

    def __getitem__(self, index):
        return dict(inputs=self.data[index], sample_idx=index)


class ToyPCL(BaseModel, ExtractsClusteringFeatures):
    """A linear encoder, its momentum copy and a ProtoNCE loss."""

    def __init__(self, dim=6, feat_dim=4, momentum=0.5,
                 num_clusters=NUM_CLUSTERS):
        super().__init__()
        self.encoder = nn.Linear(dim, feat_dim)
        self.momentum_encoder = copy.deepcopy(
            self.encoder).requires_grad_(False)
        self.proto_loss = ProtoNCELoss(num_clusters, temperature=0.3)
        self.momentum = momentum

    def extract_clustering_features(self, data_batch):
        inputs = torch.stack(list(data_batch['inputs']))
        return F.normalize(self.momentum_encoder(inputs), dim=1)

    def forward(self, inputs, sample_idx=None, mode='tensor'):
        inputs = torch.stack(list(inputs))
        query = F.normalize(self.encoder(inputs), dim=1)
        if mode != 'loss':
            return query
        with torch.no_grad():
            for average, current in zip(self.momentum_encoder.parameters(),
                                        self.encoder.parameters()):
                average.mul_(self.momentum).add_(
                    current, alpha=1 - self.momentum)
            key = F.normalize(self.momentum_encoder(inputs), dim=1)
        return dict(
            loss_align=-(query * key).sum(1).mean(),
            loss_proto=self.proto_loss(query, torch.as_tensor(sample_idx)))


def reference_clustering(model, dataset, hook, epoch,
                         num_clusters=NUM_CLUSTERS):
    """Single-process clustering of all features, as the hook specifies."""
    with torch.no_grad():
        features = model.extract_clustering_features(
            dict(inputs=list(dataset.data)))
    results = []
    for m, k in enumerate(num_clusters):
        seed = hook.seed + epoch * len(num_clusters) + m
        result = kmeans(features, k, seed=seed, **hook.kmeans_cfg)
        phi = estimate_concentration(
            features,
            result.centroids,
            result.assignments,
            alpha=hook.alpha,
            clip_percentiles=hook.clip_percentiles,
            mean_concentration=0.3)
        results.append((F.normalize(result.centroids,
                                    dim=1), phi, result.assignments))
    return results


def make_hook(dataset, batch_size=4, **kwargs):
    return PrototypeClusteringHook(
        dataloader=dict(dataset=dataset, batch_size=batch_size, num_workers=0),
        kmeans_cfg=KMEANS_CFG,
        **kwargs)


def test_single_process_cluster_matches_reference():
    torch.manual_seed(0)
    model, dataset = ToyPCL().double(), ToyDataset()
    dataset.data = dataset.data.double()
    hook = make_hook(dataset)
    runner = SimpleNamespace(model=model, epoch=4, logger=None)
    results = hook.cluster(runner)
    reference = reference_clustering(model, dataset, hook, epoch=4)
    stored = model.proto_loss.get_prototypes()
    assert model.proto_loss.clustering_epoch.item() == 4
    for result, saved, (prototypes, phi,
                        assignments) in zip(results, stored, reference):
        assert torch.equal(result['assignments'], assignments)
        torch.testing.assert_close(result['prototypes'], prototypes)
        torch.testing.assert_close(result['concentrations'], phi)
        assert torch.equal(saved['assignments'], assignments)
        torch.testing.assert_close(saved['concentrations'], phi)
        torch.testing.assert_close(float(phi.mean()), 0.3)


THREE_CLUSTERINGS = (3, 4, 5)
BUFFERS = ('prototypes', 'concentrations', 'assignments')


def _three_clusterings_setup():
    """The model, dataset and hook of the 3-clustering tests.

    Features are embedded one sample per batch, so that they are bit for bit
    the same whether a rank embeds a shard or one process embeds them all.
    """
    torch.manual_seed(0)  # the same model on every rank
    model = ToyPCL(num_clusters=THREE_CLUSTERINGS).double()
    dataset = ToyDataset(num_samples=37)
    dataset.data = dataset.data.double()
    hook = make_hook(dataset, batch_size=1)
    return model, dataset, hook


def _three_clusterings_worker(rank, port):
    init_gloo(rank, port)
    try:
        model, dataset, hook = _three_clusterings_setup()
        runner = SimpleNamespace(model=model, epoch=2, logger=None)
        # each rank embeds its shard only (19 and 18 samples)
        shard = list(iter(hook._build_dataloader(runner).sampler))
        events = []
        cluster_one = hook._cluster_one
        broadcast = torch_dist.broadcast

        def recording_cluster_one(features, k, seed, mean_concentration):
            events.append(('kmeans', k, seed))
            return cluster_one(features, k, seed, mean_concentration)

        def recording_broadcast(tensor, src, *args, **kwargs):
            events.append(('broadcast', src, tuple(tensor.shape)))
            return broadcast(tensor, src, *args, **kwargs)

        hook._cluster_one = recording_cluster_one
        torch_dist.broadcast = recording_broadcast
        try:
            results = hook.cluster(runner)
        finally:
            torch_dist.broadcast = broadcast
        loss = model.proto_loss
        return dict(
            shard=shard,
            events=events,
            inertia=[r['inertia'] for r in results],
            **{name: getattr(loss, name)
               for name in BUFFERS + ('clustering_epoch', )})
    finally:
        torch_dist.destroy_process_group()


def test_two_gloo_ranks_split_three_clusterings(port):
    ranks = run_two_ranks(_three_clusterings_worker, port)
    # DefaultSampler(shuffle=False) shards by stride: 19 and 18 samples
    assert ranks[0]['shard'] == list(range(0, 37, 2))
    assert ranks[1]['shard'] == list(range(1, 37, 2))

    # Clustering m runs on rank m % 2 with seed + epoch * M + m (seed 0,
    # epoch 2, M = 3), and a rank runs all its clusterings before the first
    # broadcast: rank 0 both of its own, then the broadcasts.
    owned = [[('kmeans', 3, 6), ('kmeans', 5, 8)], [('kmeans', 4, 7)]]
    for rank, result in enumerate(ranks):
        kinds = [event[0] for event in result['events']]
        num_owned = len(owned[rank])
        assert kinds == ['kmeans'] * num_owned + ['broadcast'] * 12, rank
        assert result['events'][:num_owned] == owned[rank]
        # prototypes (k, 4), concentrations (k,), assignments (37,),
        # inertia (1,) of each clustering, from its owner
        expected = []
        for m, k in enumerate(THREE_CLUSTERINGS):
            expected += [('broadcast', m % 2, shape)
                         for shape in ((k, 4), (k, ), (37, ), (1, ))]
        assert result['events'][num_owned:] == expected

    # One process clustering the same features gives the same bits.
    model, dataset, hook = _three_clusterings_setup()
    single = hook.cluster(SimpleNamespace(model=model, epoch=2, logger=None))
    for rank, result in enumerate(ranks):
        assert int(result['clustering_epoch']) == 2
        assert result['inertia'] == [r['inertia'] for r in single]
        for name in BUFFERS:
            assert torch.equal(result[name], getattr(model.proto_loss,
                                                     name)), (rank, name)
    assert ranks[0]['assignments'].shape == (3, 37)
    # ... which is k-means of the features as the hook specifies.
    reference = reference_clustering(
        model, dataset, hook, epoch=2, num_clusters=THREE_CLUSTERINGS)
    for saved, (prototypes, phi, assignments) in zip(
            model.proto_loss.get_prototypes(), reference):
        assert torch.equal(saved['assignments'], assignments)
        torch.testing.assert_close(saved['prototypes'], prototypes)
        torch.testing.assert_close(saved['concentrations'], phi)


def test_warmup_interval_and_restored_epoch_skip(monkeypatch):
    hook = make_hook(ToyDataset(), warmup_epochs=2, interval=3)
    model = ToyPCL()
    calls = []
    monkeypatch.setattr(hook, 'cluster',
                        lambda runner: calls.append(runner.epoch))
    for epoch in range(10):
        hook.before_train_epoch(SimpleNamespace(model=model, epoch=epoch))
    assert calls == [2, 5, 8]
    # a clustering already made for this epoch (restored) is not redone
    model.proto_loss.clustering_epoch.fill_(5)
    calls.clear()
    hook.before_train_epoch(SimpleNamespace(model=model, epoch=5))
    assert calls == []


def test_bad_configuration():
    with pytest.raises(ValueError, match='warmup_epochs'):
        PrototypeClusteringHook(warmup_epochs=-1)
    with pytest.raises(ValueError, match='unknown options'):
        PrototypeClusteringHook(kmeans_cfg=dict(n_iter=3))
    hook = PrototypeClusteringHook()
    with pytest.raises(ValueError, match='set_prototypes'):
        hook.cluster(SimpleNamespace(model=nn.Linear(2, 2), epoch=0))
    with pytest.raises(ValueError, match='epoch-based'):
        hook.before_train(SimpleNamespace(model=ToyPCL(), train_loop=object()))
    with pytest.raises(ValueError, match='extract_clustering_features'):
        hook.feature_extractor(nn.Sequential(ProtoNCELoss((2, 3))))
    # the clustering dataset must be the training set
    runner = SimpleNamespace(
        model=ToyPCL(),
        epoch=0,
        train_dataloader=SimpleNamespace(dataset=ToyDataset(num_samples=40)))
    with pytest.raises(ValueError, match='same samples'):
        make_hook(ToyDataset(num_samples=37)).cluster(runner)


# ---------------------------------------------------------------------------
# save / resume with a real Runner
# ---------------------------------------------------------------------------


def make_runner(work_dir, name, max_epochs, resume_from=None):
    from mmengine.runner import Runner
    torch.manual_seed(0)
    dataset = ToyDataset()
    return Runner(
        model=ToyPCL(),
        work_dir=str(work_dir),
        experiment_name=name,
        train_dataloader=dict(
            dataset=dataset,
            sampler=dict(type='DefaultSampler', shuffle=True),
            batch_size=5,
            num_workers=0),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.5)),
        train_cfg=dict(by_epoch=True, max_epochs=max_epochs),
        default_hooks=dict(
            checkpoint=dict(type='CheckpointHook', interval=1),
            logger=dict(type='LoggerHook', interval=100)),
        custom_hooks=[
            dict(
                type='mmlt.PrototypeClusteringHook',
                warmup_epochs=1,
                interval=2,
                dataloader=dict(dataset=dataset, batch_size=8, num_workers=0),
                kmeans_cfg=KMEANS_CFG)
        ],
        randomness=dict(seed=0),
        default_scope='mmengine',
        log_level='WARNING',
        load_from=resume_from,
        resume=resume_from is not None)


def test_runner_save_and_resume_restores_prototypes(tmp_path):
    # uninterrupted: clustering at epoch 1 only (warm-up 1, interval 2)
    runner_a = make_runner(tmp_path / 'a', f'a{time.time_ns()}', 3)
    runner_a.train()
    loss_a = runner_a.model.proto_loss
    assert loss_a.clustering_epoch.item() == 1
    checkpoint = torch.load(tmp_path / 'a' / 'epoch_2.pth', map_location='cpu')
    saved = {
        name: checkpoint['state_dict'][f'proto_loss.{name}']
        for name in ('prototypes', 'concentrations', 'assignments')
    }
    assert saved['assignments'].shape == (2, 37)

    # resume after epoch 2 with nothing left to train: the buffers are the
    # checkpoint's, bit for bit
    runner_b = make_runner(tmp_path / 'b', f'b{time.time_ns()}', 2,
                           str(tmp_path / 'a' / 'epoch_2.pth'))
    runner_b.train()
    loss_b = runner_b.model.proto_loss
    assert loss_b.clustering_epoch.item() == 1
    for name, tensor in saved.items():
        assert torch.equal(getattr(loss_b, name), tensor), name

    # resume and train epoch 2, which uses the restored clustering: the
    # result equals the uninterrupted run
    runner_c = make_runner(tmp_path / 'c', f'c{time.time_ns()}', 3,
                           str(tmp_path / 'a' / 'epoch_2.pth'))
    runner_c.train()
    for (name, p_a), p_c in zip(runner_a.model.state_dict().items(),
                                runner_c.model.state_dict().values()):
        assert torch.equal(p_a, p_c), name
    # without the restored prototypes epoch 2 would train differently
    runner_d = make_runner(tmp_path / 'd', f'd{time.time_ns()}', 3,
                           str(tmp_path / 'a' / 'epoch_2.pth'))
    runner_d.model.proto_loss._load_from_state_dict = \
        _drop_clustering(runner_d.model.proto_loss)
    runner_d.train()
    assert not torch.equal(runner_d.model.encoder.weight,
                           runner_a.model.encoder.weight)


def _drop_clustering(loss):
    """A _load_from_state_dict that ignores the saved clustering."""
    original = loss._load_from_state_dict

    def load(state_dict, prefix, *args):
        state_dict = {
            k: v
            for k, v in state_dict.items()
            if not k.startswith(prefix + 'prototypes')
            and not k.startswith(prefix + 'concentrations')
            and not k.startswith(prefix + 'assignments')
            and not k.startswith(prefix + 'clustering_epoch')
        }
        original(state_dict, prefix, *args)

    return load
