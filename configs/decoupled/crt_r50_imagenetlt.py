# cRT (Kang et al., ICLR 2020) on ImageNet-LT: a new linear classifier
# re-trained with class-balanced sampling on the frozen ResNet-50 of the joint
# cross-entropy run (_base_/classifier_stage_r50_imagenetlt.py).
#
#   bash tools/dist_train.sh configs/decoupled/ce-linear_r50_imagenetlt.py 8
#   bash tools/dist_train.sh configs/decoupled/crt_r50_imagenetlt.py 8
#   bash tools/dist_test.sh configs/decoupled/crt_r50_imagenetlt.py \
#       work_dirs/crt_r50_imagenetlt/epoch_10.pth 8
_base_ = ['./_base_/classifier_stage_r50_imagenetlt.py']

stage1_checkpoint = 'work_dirs/ce-linear_r50_imagenetlt/epoch_90.pth'
model = dict(
    backbone=dict(init_cfg=dict(checkpoint=stage1_checkpoint)),
    head=dict(mode='crt'))
