# A short CPU schedule for self-supervised pre-training: SGD, cosine decay.
max_epochs = 20
optim_wrapper = dict(
    # skips steps with NaN/Inf gradients; --amp makes it mmlt.AmpOptimWrapper
    type='mmlt.SkipNonFiniteOptimWrapper',
    optimizer=dict(type='SGD', lr=0.06, momentum=0.9, weight_decay=5e-4))
param_scheduler = [
    dict(
        type='CosineAnnealingLR',
        T_max=max_epochs,
        by_epoch=True,
        begin=0,
        end=max_epochs),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs)
auto_scale_lr = dict(base_batch_size=64)
