# cRT (Kang et al., ICLR 2020) on Fashion-MNIST-LT: a new linear classifier
# re-trained with class-balanced sampling on the frozen backbone of the joint
# cross-entropy run (_base_/classifier_stage_fashionmnistlt.py).
#
#   python tools/train.py configs/ce_fashionmnistlt.py
#   python tools/train.py configs/decoupled/crt_fashionmnistlt.py
#   python tools/test.py configs/decoupled/crt_fashionmnistlt.py \
#       work_dirs/crt_fashionmnistlt/epoch_10.pth
# Another joint checkpoint (mmlt's or MMPretrain's, same backbone):
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH
_base_ = ['./_base_/classifier_stage_fashionmnistlt.py']

stage1_checkpoint = 'work_dirs/ce_fashionmnistlt/epoch_20.pth'
model = dict(
    backbone=dict(init_cfg=dict(checkpoint=stage1_checkpoint)),
    head=dict(mode='crt'))
