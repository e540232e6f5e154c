# Ablation: every foreground RoI (IoU >= 0.5, the classifier's positives)
# feeds ProCo, not only those with IoU >= 0.7.
_base_ = './mask-rcnn_r18-tiny_fpn_proco_toy-lvis-val400.py'

model = dict(roi_head=dict(contrast_iou_thr=0.5))
