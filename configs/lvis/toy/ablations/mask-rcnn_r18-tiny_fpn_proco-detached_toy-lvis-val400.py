# Ablation: the projector reads the shared-fc feature without its gradient,
# so ProCo trains only the projector and leaves the detector's weights to LA
# (up to gradient clipping, whose norm includes the projector's gradient).
_base_ = './mask-rcnn_r18-tiny_fpn_proco_toy-lvis-val400.py'

model = dict(roi_head=dict(bbox_head=dict(contrast_input='detached')))
