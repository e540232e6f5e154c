# PCL (Li et al., ICLR 2021) pre-training on Fashion-MNIST-LT without labels,
# on the CPU in a few minutes: CIFAR ResNet-20, MoCo v2 neck 64-256-64,
# InfoNCE against a 1,024-key queue plus ProtoNCE over three k-means
# clusterings (10, 20, 40 prototypes) redone every epoch after 4 warm-up
# epochs. Evaluate the backbone with a k-NN classifier:
#   python tools/train.py configs/pcl_fashionmnist.py
#   python tools/analysis_tools/knn_eval.py configs/pcl_fashionmnist.py \
#       work_dirs/pcl_fashionmnist/epoch_20.pth
_base_ = [
    '_base_/datasets/pcl_fashionmnistlt.py',
    '_base_/schedules/pcl_fashionmnist_cpu.py',
    '_base_/default_runtime.py',
]

temperature = 0.2
model = dict(
    type='mmlt.PCL',
    data_preprocessor={{_base_.data_preprocessor}},
    backbone=dict(type='mmlt.CifarResNet', depth=20),
    neck=dict(
        type='MoCoV2Neck',
        in_channels=64,
        hid_channels=256,
        out_channels=64,
        with_avg_pool=True),
    instance_loss=dict(
        type='mmlt.InfoNCELoss',
        temperature=temperature,
        in_batch_negatives=False),
    proto_loss=dict(
        type='mmlt.ProtoNCELoss',
        num_clusters=(10, 20, 40),
        num_negatives=None,  # few prototypes: contrast against all
        temperature=temperature),
    queue_len=1024,
    feat_dim=64,
    # m = 0.99: with ~40 iterations per epoch the key encoder must move
    # faster than ImageNet's m = 0.999.
    momentum=0.01)

# Replaces the runtime's classification hooks: PCL needs only the E-step
# (and exact resume).
custom_hooks = [
    dict(
        type='mmlt.PrototypeClusteringHook',
        warmup_epochs=4,
        dataloader={{_base_.cluster_dataloader}},
        kmeans_cfg=dict(backend='auto', num_iters=30, num_restarts=3),
        alpha=10.0,
        clip_percentiles=(10.0, 90.0)),
    dict(type='mmlt.ExactResumeHook'),
    dict(type='mmlt.CheckpointCheckHook'),
]
default_hooks = dict(logger=dict(type='LoggerHook', interval=10))

# Distributed timeout (seconds; MMEngine passes it to init_process_group).
# Ranks wait in a collective while one rank clusters: here 2,478 64-d
# features into 10/20/40 clusters, well under a second, so 30 minutes (the
# gloo default; NCCL's is 10) is ample even on a loaded CPU machine. The
# backend stays the runtime's.
env_cfg = dict(dist_cfg=dict(timeout=1800))
