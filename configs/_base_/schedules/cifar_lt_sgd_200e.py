# CIFAR-LT schedule of ProCo (Du et al., TPAMI 2024): SGD, batch 256 on one
# GPU, lr 0.3, momentum 0.9, weight decay 2e-4, 200 epochs; linear warm-up
# over the first 5 epochs (lr * (epoch + 1) / 5, per epoch as in the
# reference code), then x0.1 at epochs 160 and 180.
max_epochs = 200
warmup_epochs = 5
optim_wrapper = dict(
    # skips steps with NaN/Inf gradients; --amp makes it mmlt.AmpOptimWrapper
    type='mmlt.SkipNonFiniteOptimWrapper',
    optimizer=dict(type='SGD', lr=0.3, momentum=0.9, weight_decay=2e-4))
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1 / warmup_epochs,
        by_epoch=True,
        begin=0,
        end=warmup_epochs),
    dict(
        type='MultiStepLR',
        milestones=[160, 180],
        gamma=0.1,
        by_epoch=True,
        begin=0,
        end=max_epochs),
]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=10)
val_cfg = dict()
test_cfg = dict()
# The lr above is for a total batch of 256 (--auto-scale-lr rescales it).
auto_scale_lr = dict(base_batch_size=256)
