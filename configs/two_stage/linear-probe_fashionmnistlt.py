# Two-stage contrastive training, stage 2 on Fashion-MNIST-LT (n_max 1000,
# IF 100): a linear classifier (cross-entropy) on the frozen ResNet-20 of a
# stage-1 checkpoint (_base_/linear_probe_cifar_resnet.py), trained on the
# same long-tailed set with the classifier view's augmentation and tested on
# the balanced 10,000 test images with mmlt.LongTailAccuracy (overall /
# many / medium / few top-1). 5 epochs, batch 256, SGD lr 0.1, cosine.
#
#   python tools/train.py configs/two_stage/linear-probe_fashionmnistlt.py \
#       --cfg-options model.backbone.init_cfg.checkpoint=work_dirs/proco_stage1_fashionmnistlt/epoch_8.pth
#   python tools/test.py configs/two_stage/linear-probe_fashionmnistlt.py \
#       work_dirs/linear-probe_fashionmnistlt/epoch_5.pth
_base_ = [
    './_base_/linear_probe_cifar_resnet.py',
    '../_base_/datasets/fashionmnistlt.py',
    '../_base_/default_runtime.py',
]

stage1_checkpoint = 'work_dirs/proco_stage1_fashionmnistlt/epoch_8.pth'
probe_epochs = 5
model = dict(
    data_preprocessor={{_base_.data_preprocessor}},
    backbone=dict(depth=20, init_cfg=dict(checkpoint=stage1_checkpoint)),
    head=dict(num_classes=10))

train_dataloader = dict(
    batch_size=256,
    dataset=dict(pipeline=_base_.cls_view + [dict(type='PackInputs')]))
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
# evaluated once, by tools/test.py or the batch-size study, on the test set
val_dataloader = val_evaluator = None
default_hooks = dict(checkpoint=dict(interval=probe_epochs, max_keep_ckpts=1))
auto_scale_lr = dict(base_batch_size=256)
