# Ablation: the branch has its own fc on the RoI features (parallel to the
# shared fcs), so its gradient reaches the RoI features and the backbone but
# not the shared fcs that fc_reg and fc_cls read.
_base_ = './mask-rcnn_r18-tiny_fpn_proco_toy-lvis-val400.py'

model = dict(roi_head=dict(bbox_head=dict(contrast_input='separate')))
