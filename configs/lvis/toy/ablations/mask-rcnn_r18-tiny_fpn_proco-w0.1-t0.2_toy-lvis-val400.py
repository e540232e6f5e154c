# Ablation: a weaker, softer ProCo term: loss weight 0.1 (not 0.5) and
# temperature 0.2 (not 0.1).
_base_ = './mask-rcnn_r18-tiny_fpn_proco_toy-lvis-val400.py'

model = dict(
    roi_head=dict(
        bbox_head=dict(
            contrast_loss=dict(loss_weight=0.1, temperature=0.2))))
