# LWS (Kang et al., ICLR 2020) on Fashion-MNIST-LT: the joint cross-entropy
# run's backbone and classifier, both frozen; per-class scales f (init 1)
# learnt with class-balanced sampling
# (_base_/classifier_stage_fashionmnistlt.py). The classifier comes from the
# same checkpoint through the head's Pretrained init (keys under 'head.').
#
#   python tools/train.py configs/ce_fashionmnistlt.py
#   python tools/train.py configs/decoupled/lws_fashionmnistlt.py
#   python tools/test.py configs/decoupled/lws_fashionmnistlt.py \
#       work_dirs/lws_fashionmnistlt/epoch_10.pth
# Another joint checkpoint: --cfg-options
#   model.backbone.init_cfg.checkpoint=PATH model.head.init_cfg.checkpoint=PATH
_base_ = ['./_base_/classifier_stage_fashionmnistlt.py']

stage1_checkpoint = 'work_dirs/ce_fashionmnistlt/epoch_20.pth'
model = dict(
    backbone=dict(init_cfg=dict(checkpoint=stage1_checkpoint)),
    head=dict(mode='lws', init_cfg=dict(
        type='Pretrained', checkpoint=stage1_checkpoint, prefix='head.')))
