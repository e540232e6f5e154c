# PCL's ImageNet schedule: SGD (lr 0.03 for a batch of 256, momentum 0.9,
# weight decay 1e-4), 200 epochs. PCL v2 decays the learning rate with a
# cosine; PCL v1 multiplies it by 0.1 at epochs 120 and 160 (swap in
# dict(type='MultiStepLR', by_epoch=True, milestones=[120, 160], gamma=0.1)).
max_epochs = 200
optim_wrapper = dict(
    # skips steps with NaN/Inf gradients; --amp makes it mmlt.AmpOptimWrapper
    type='mmlt.SkipNonFiniteOptimWrapper',
    optimizer=dict(type='SGD', lr=0.03, momentum=0.9, weight_decay=1e-4))
param_scheduler = [
    dict(
        type='CosineAnnealingLR',
        T_max=max_epochs,
        by_epoch=True,
        begin=0,
        end=max_epochs),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs)
auto_scale_lr = dict(base_batch_size=256)
