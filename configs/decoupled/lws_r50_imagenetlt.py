# LWS (Kang et al., ICLR 2020) on ImageNet-LT: the joint run's ResNet-50 and
# linear classifier, both frozen; per-class scales (init 1) learnt with
# class-balanced sampling (_base_/classifier_stage_r50_imagenetlt.py).
#
#   bash tools/dist_train.sh configs/decoupled/ce-linear_r50_imagenetlt.py 8
#   bash tools/dist_train.sh configs/decoupled/lws_r50_imagenetlt.py 8
#   bash tools/dist_test.sh configs/decoupled/lws_r50_imagenetlt.py \
#       work_dirs/lws_r50_imagenetlt/epoch_10.pth 8
# On the cosine classifier of configs/ce_r50_imagenetlt.py: --cfg-options
#   model.head.classifier=cosine and both checkpoints set to its epoch_90.pth
_base_ = ['./_base_/classifier_stage_r50_imagenetlt.py']

stage1_checkpoint = 'work_dirs/ce-linear_r50_imagenetlt/epoch_90.pth'
model = dict(
    backbone=dict(init_cfg=dict(checkpoint=stage1_checkpoint)),
    head=dict(mode='lws', init_cfg=dict(
        type='Pretrained', checkpoint=stage1_checkpoint, prefix='head.')))
