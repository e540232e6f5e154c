# Two-stage contrastive training on CIFAR-100-LT (IF 100), stage 2: a linear
# classifier (cross-entropy) on the frozen ResNet-32 of a stage-1 checkpoint
# (_base_/linear_probe_cifar_resnet.py), trained on the classifier view
# (crop, flip, AutoAugment, Cutout) for 20 epochs at batch 256, tested with
# mmlt.LongTailAccuracy.
#
#   python tools/train.py configs/two_stage/linear-probe_r32_cifar100lt.py \
#       --cfg-options model.backbone.init_cfg.checkpoint=work_dirs/proco_stage1_r32_cifar100lt/epoch_200.pth
#   python tools/test.py configs/two_stage/linear-probe_r32_cifar100lt.py \
#       work_dirs/linear-probe_r32_cifar100lt/epoch_20.pth
_base_ = [
    './_base_/linear_probe_cifar_resnet.py',
    '../_base_/datasets/cifar100lt_single_view.py',
    '../_base_/gpu_runtime.py',
]

stage1_checkpoint = 'work_dirs/proco_stage1_r32_cifar100lt/epoch_200.pth'
probe_epochs = 20
model = dict(
    data_preprocessor={{_base_.data_preprocessor}},
    backbone=dict(init_cfg=dict(checkpoint=stage1_checkpoint)))

param_scheduler = [
    dict(
        type='CosineAnnealingLR',
        T_max=probe_epochs,
        by_epoch=True,
        begin=0,
        end=probe_epochs),
]
train_cfg = dict(by_epoch=True, max_epochs=probe_epochs,
                 val_interval=probe_epochs + 1)
val_dataloader = val_evaluator = None
default_hooks = dict(checkpoint=dict(interval=probe_epochs, max_keep_ckpts=1))
auto_scale_lr = dict(base_batch_size=256)
