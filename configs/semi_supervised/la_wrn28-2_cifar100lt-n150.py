# Supervised-only baseline of the semi-supervised cifar100lt configs: logit
# adjustment (tau 1) on the labeled split alone (N1 = 150), weak view only,
# same backbone, optimiser and number of iterations (250k batches of 64, the
# labeled part of the semi-supervised batches), and the EMA model is
# evaluated as in the semi-supervised runs (every 500 iterations); no
# unlabeled data.
#
#   python tools/train.py configs/semi_supervised/la_wrn28-2_cifar100lt-n150.py
_base_ = './_base_/cifar100lt_ssl.py'

total_iters = _base_.max_epochs * _base_.epoch_length
train_dataloader = dict(
    _delete_=True,
    batch_size=_base_.labeled_batch,
    num_workers=8,
    persistent_workers=True,
    pin_memory=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        _base_.labeled_dataset,
        pipeline=_base_.weak_view + [dict(type='PackInputs')]))
model = dict(
    head=dict(
        _delete_=True,
        type='mmlt.ContrastiveClsHead',
        num_classes=_base_.model.head.num_classes,
        in_channels=128,
        loss=dict(type='mmlt.LogitAdjustLoss', tau=1.0)))
# FixMatch's cos(7 pi k / 16 K) by iterations (_base_.daso_constant: DASO's
# constant rate)
param_scheduler = [
    dict(type='mmlt.FixMatchCosineLR', fraction=7 / 16, by_epoch=False)
]
train_cfg = dict(
    _delete_=True,
    type='IterBasedTrainLoop',
    max_iters=total_iters,
    val_interval=_base_.epoch_length)
auto_scale_lr = dict(base_batch_size=_base_.labeled_batch)
default_hooks = dict(
    checkpoint=dict(by_epoch=False, interval=10 * _base_.epoch_length))
log_processor = dict(by_epoch=False)
custom_hooks = [
    dict(type='mmlt.ClassCountsHook'),
    dict(type='EMAHook', momentum=0.001, priority='ABOVE_NORMAL'),
    dict(type='mmlt.ExactResumeHook'),
    dict(type='mmlt.CheckpointCheckHook'),
]
