# Runtime shared by mmlt's classification configs (MMPretrain host).
default_scope = 'mmpretrain'

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=2),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='VisualizationHook', enable=False),
    # The work dir for the metrics' per-class files (per_class_accuracy.csv).
    metric_out_dir=dict(type='mmlt.MetricOutDirHook'),
    # Gathers across GPUs pad to the batch size: no host read in the step.
    gather_bound=dict(type='mmlt.GatherBoundHook'),
)

# ClassCountsHook gives the training class counts to the losses (logit
# adjustment prior) and metrics; VMFWindowHook advances ProCo's two-epoch
# estimator window. Both are no-ops for models that do not need them.
# ExactResumeHook makes --resume continue bit for bit; CheckpointCheckHook
# names what differs when a checkpoint does not fit (docs/resume.md).
custom_hooks = [
    dict(type='mmlt.ClassCountsHook'),
    dict(type='mmlt.VMFWindowHook'),
    dict(type='mmlt.ExactResumeHook'),
    dict(type='mmlt.CheckpointCheckHook'),
]

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    # Without CUDA mmlt runs nccl as gloo (with a warning) only where nothing
    # suggests GPUs; on a GPU node it stops unless backend='gloo' or
    # MMLT_ALLOW_CPU=1 (mmlt/compat.py, docs/gpu.md).
    dist_cfg=dict(backend='nccl'),
)

vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='UniversalVisualizer', vis_backends=vis_backends)

log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0, deterministic=False)
