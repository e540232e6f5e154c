"""PCL on MMPretrain's MoCo: one training step checked against its terms
computed independently, the configs, and a short real run with the hook."""
import os.path as osp

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip('mmpretrain')

from mmengine.config import Config  # noqa: E402
from mmengine.optim import OptimWrapper  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402
from mmpretrain.structures import DataSample  # noqa: E402

import mmlt  # noqa: E402,F401
from mmlt.models.losses.info_nce_loss import info_nce  # noqa: E402
from mmlt.models.losses.proto_nce_loss import proto_nce  # noqa: E402
from mmlt.registry import HOOKS, MODELS  # noqa: E402

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..', '..'))
FASHION_ROOT = '/usr/share/datasets/fashion-mnist'
BATCH, QUEUE, DIM, CLUSTERS = 4, 16, 16, (3, 4)


def tiny_pcl(**kwargs):
    init_default_scope('mmpretrain')
    cfg = dict(
        type='mmlt.PCL',
        backbone=dict(type='mmlt.CifarResNet', depth=8),
        neck=dict(
            type='MoCoV2Neck',
            in_channels=64,
            hid_channels=32,
            out_channels=DIM,
            with_avg_pool=True),
        proto_loss=dict(
            type='mmlt.ProtoNCELoss', num_clusters=CLUSTERS, temperature=0.2),
        queue_len=QUEUE,
        feat_dim=DIM,
        momentum=0.01)
    cfg.update(kwargs)
    return MODELS.build(cfg)


def random_batch(seed=0, sample_idx=(0, 5, 9, 2)):
    generator = torch.Generator().manual_seed(seed)
    views = [
        torch.randint(0, 256, (BATCH, 3, 16, 16),
                      generator=generator).to(torch.uint8) for _ in range(2)
    ]
    samples = [DataSample(metainfo=dict(sample_idx=i)) for i in sample_idx]
    return dict(inputs=views, data_samples=samples)


def set_random_prototypes(model, num_data=10):
    generator = torch.Generator().manual_seed(1)
    model.proto_loss.set_prototypes(
        [torch.randn(k, DIM, generator=generator) for k in CLUSTERS],
        [0.1 + torch.rand(k, generator=generator) for k in CLUSTERS], [
            torch.randint(0, k, (num_data, ), generator=generator)
            for k in CLUSTERS
        ],
        epoch=0)


def test_training_step_matches_independent_terms():
    torch.manual_seed(0)
    model = tiny_pcl()
    set_random_prototypes(model)
    batch = random_batch()
    queue_before = model.queue.clone()
    # the terms, computed before the step from the same weights
    with torch.no_grad():
        data = model.data_preprocessor(batch, True)
        query_images, key_images = data['inputs']
        query = F.normalize(model.neck(model.backbone(query_images))[0], dim=1)
        # the first EMA update copies the weights: the key encoder equals the
        # query encoder here
        key = F.normalize(model.neck(model.backbone(key_images))[0], dim=1)
        expected_instance = info_nce(query, key, queue_before.T, 0.2,
                                     False).mean()
        stored = model.proto_loss.get_prototypes()
        index = torch.tensor([0, 5, 9, 2])
        expected_proto = proto_nce(query, [s['prototypes'] for s in stored],
                                   [s['concentrations'] for s in stored],
                                   [s['assignments'][index]
                                    for s in stored]).mean()
    first_weight = next(model.backbone.parameters())
    weight_before = first_weight.detach().clone()
    optim_wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1))
    losses = model.train_step(batch, optim_wrapper)
    torch.testing.assert_close(
        losses['loss_instance'], expected_instance, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(
        losses['loss_proto'], expected_proto, rtol=1e-4, atol=1e-5)
    assert losses['loss_proto'].item() > 0
    assert not torch.equal(first_weight, weight_before)
    # the keys entered the queue
    assert int(model.queue_ptr) == BATCH
    torch.testing.assert_close(
        model.queue[:, :BATCH].T, key, rtol=1e-4, atol=1e-5)


def test_warmup_step_has_zero_proto_term():
    torch.manual_seed(0)
    model = tiny_pcl()
    optim_wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1))
    losses = model.train_step(random_batch(), optim_wrapper)
    assert losses['loss_proto'].item() == 0.0
    assert losses['loss_instance'].item() > 0


def test_needs_sample_idx_and_two_views():
    model = tiny_pcl()
    batch = random_batch()
    batch['data_samples'] = [DataSample() for _ in range(BATCH)]
    optim_wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1))
    with pytest.raises(ValueError, match='sample_idx'):
        model.train_step(batch, optim_wrapper)
    with pytest.raises(ValueError, match='two augmented views'):
        model.loss(torch.zeros(BATCH, 3, 16, 16), [])


def test_clustering_features_are_momentum_embeddings():
    torch.manual_seed(0)
    model = tiny_pcl().eval()
    images = random_batch()['inputs'][0]
    features = model.extract_clustering_features(
        dict(inputs=images, data_samples=None))
    with torch.no_grad():
        inputs = model.data_preprocessor(
            dict(inputs=images, data_samples=None), False)['inputs']
        expected = F.normalize(model.encoder_k.module(inputs)[0], dim=1)
    torch.testing.assert_close(features, expected)
    torch.testing.assert_close(features.norm(dim=1), torch.ones(BATCH))
    assert 'proto_loss.assignments' in model._ddp_params_and_buffers_to_ignore


@pytest.mark.parametrize('name',
                         ['pcl_fashionmnist.py', 'pcl_r50_imagenet.py'])
def test_configs_build(name):
    cfg = Config.fromfile(osp.join(REPO, 'configs', name))
    init_default_scope(cfg.default_scope)
    model = MODELS.build(cfg.model)
    assert type(model).__name__ == 'PCL'
    assert model.proto_loss.num_clusters == tuple(
        cfg.model.proto_loss.num_clusters)
    hook = HOOKS.build(cfg.custom_hooks[0])
    assert type(hook).__name__ == 'PrototypeClusteringHook'
    assert cfg.train_dataloader.drop_last
    assert cfg.model.queue_len % cfg.train_dataloader.batch_size == 0


@pytest.mark.slow
@pytest.mark.skipif(
    not osp.isdir(FASHION_ROOT), reason='Fashion-MNIST is not installed')
def test_short_fashion_mnist_run_clusters_after_warmup(tmp_path):
    from mmengine.runner import Runner
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'pcl_fashionmnist.py'))
    tiny = dict(n_max=12, imb_factor=2)
    cfg.train_dataloader.dataset.update(tiny)
    cfg.train_dataloader.update(
        batch_size=16, num_workers=0, persistent_workers=False)
    hook_cfg = cfg.custom_hooks[0]
    hook_cfg.dataloader.dataset.update(tiny)
    hook_cfg.update(warmup_epochs=1, kmeans_cfg=dict(backend='torch'))
    cfg.model.backbone.depth = 8
    cfg.model.queue_len = 64
    cfg.model.proto_loss.num_clusters = (3, 5)
    cfg.train_cfg.max_epochs = 2
    cfg.param_scheduler = []
    cfg.work_dir = str(tmp_path)
    cfg.log_level = 'WARNING'
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=2)
    runner = Runner.from_cfg(cfg)
    runner.train()
    loss = runner.model.proto_loss
    num_images = len(runner.train_dataloader.dataset)
    assert loss.clustering_epoch.item() == 1
    assert loss.assignments.shape == (2, num_images)
    assert loss.concentrations.mean().item() == pytest.approx(0.2)
    scalars = runner.message_hub.log_scalars
    assert scalars['train/loss_proto'].current() > 0
