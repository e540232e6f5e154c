# PCL v2 (Li et al., "Prototypical Contrastive Learning of Unsupervised
# Representations", ICLR 2021) on ImageNet-1k: ResNet-50, 8 GPUs x 32 images,
# 200 epochs. Hyper-parameters of the paper and its code: MoCo momentum
# 0.999, 128-d embedding with an MLP neck, temperature 0.2, a queue of 16,384
# keys, K = {25000, 50000, 100000} clusters, r = 16,000 negative prototypes,
# alpha = 10, concentrations clipped to their 10th-90th percentiles, 20 warm-up
# epochs with InfoNCE only, k-means re-run on center-cropped images before
# every later epoch (20 iterations, 5 restarts; faiss when installed).
_base_ = [
    '_base_/datasets/pcl_imagenet.py',
    '_base_/schedules/pcl_imagenet_sgd_coslr_200e.py',
    '_base_/gpu_runtime.py',
]

temperature = 0.2
model = dict(
    type='mmlt.PCL',
    data_preprocessor={{_base_.data_preprocessor}},
    backbone=dict(
        type='ResNet',
        depth=50,
        norm_cfg=dict(type='BN'),
        zero_init_residual=False),
    neck=dict(
        type='MoCoV2Neck',
        in_channels=2048,
        hid_channels=2048,
        out_channels=128,
        with_avg_pool=True),
    instance_loss=dict(
        type='mmlt.InfoNCELoss',
        temperature=temperature,
        in_batch_negatives=False),
    proto_loss=dict(
        type='mmlt.ProtoNCELoss',
        num_clusters=(25000, 50000, 100000),
        num_negatives=16000,
        temperature=temperature),
    queue_len=16384,
    feat_dim=128,
    momentum=0.001)

custom_hooks = [
    dict(
        type='mmlt.PrototypeClusteringHook',
        warmup_epochs=20,
        dataloader={{_base_.cluster_dataloader}},
        kmeans_cfg=dict(
            backend='auto',
            num_iters=20,
            num_restarts=5,
            # k-means++ seeding is O(N k p) sequential work: too slow for
            # k = 100000; faiss also starts from random samples.
            init='random',
            faiss_kwargs=dict(
                max_points_per_centroid=1000, min_points_per_centroid=10)),
        alpha=10.0,
        clip_percentiles=(10.0, 90.0)),
    dict(type='mmlt.ExactResumeHook'),
    dict(type='mmlt.CheckpointCheckHook'),
]
default_hooks = dict(checkpoint=dict(max_keep_ckpts=3))

# Distributed timeout (seconds; MMEngine passes it to init_process_group as a
# timedelta), to outlast the E-step: the other ranks wait in a broadcast
# while rank m % world_size runs clustering m. The largest, k = 100,000 on
# N = 1.28M 128-d features with 20 iterations x 5 restarts, is
# 2 N k p x 100 = 3.3e15 flop. backend='auto' runs it in faiss on the CPU
# when faiss is installed, at about 30 GFLOP/s per thread (measured with
# faiss-cpu 1.15 on a Xeon VM): about 30 thread-hours, 6 h with the 5 CPUs
# per rank of tools/slurm_train.sh if OMP_NUM_THREADS=5 (MMEngine and
# torchrun set it to 1 in distributed runs: faiss would then take ~30 h).
# Hence 8 h, not NCCL's 10 minutes. A crashed rank still ends the job at once
# (torchrun, srun --kill-on-bad-exit); only a hang waits this long. The
# backend stays the runtime's.
env_cfg = dict(dist_cfg=dict(timeout=8 * 3600))
