# Ablation: no gradient clipping (the toy configs clip the total norm at
# 35, which shrinks every loss's gradient when the branch's spikes).
_base_ = './mask-rcnn_r18-tiny_fpn_proco_toy-lvis-val400.py'

optim_wrapper = dict(clip_grad=None)
