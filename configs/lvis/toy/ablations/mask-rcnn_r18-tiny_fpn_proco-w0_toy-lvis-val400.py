# Ablation: the ProCo branch with loss weight 0. With paired seeds (the
# branch draws from its own random stream) this must train exactly the LA
# detector: every shared parameter bitwise equal to
# mask-rcnn_r18-tiny_fpn_la_toy-lvis-val400.py's.
_base_ = './mask-rcnn_r18-tiny_fpn_proco_toy-lvis-val400.py'

model = dict(
    roi_head=dict(bbox_head=dict(contrast_loss=dict(loss_weight=0.0))))
