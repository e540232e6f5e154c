# ImageNet-LT schedule of ProCo (Du et al., TPAMI 2024) and BCL (Zhu et al.,
# CVPR 2022): SGD, batch 256 (8 GPUs x 32), lr 0.1, momentum 0.9, weight
# decay 5e-4, 90 epochs, no warm-up, cosine decay to 0 stepped per epoch as in
# the reference code (lr_e = 0.5 * lr * (1 + cos(pi * e / 90))).
max_epochs = 90
optim_wrapper = dict(
    # skips steps with NaN/Inf gradients; --amp makes it mmlt.AmpOptimWrapper
    type='mmlt.SkipNonFiniteOptimWrapper',
    optimizer=dict(type='SGD', lr=0.1, momentum=0.9, weight_decay=5e-4))
param_scheduler = [
    dict(
        type='CosineAnnealingLR',
        T_max=max_epochs,
        eta_min=0.,
        by_epoch=True,
        begin=0,
        end=max_epochs),
]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=10)
val_cfg = dict()
test_cfg = dict()
# The lr above is for a total batch of 256 (--auto-scale-lr rescales it).
auto_scale_lr = dict(base_batch_size=256)
