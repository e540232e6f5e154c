# The toy LA + ProCo detector (its LVIS settings) evaluated on the toy set's
# large validation set (400 images), the base of the ablations next to it
# (issue 27, part 5; docs/detection.md).
_base_ = '../mask-rcnn_r18-tiny_fpn_proco_toy-lvis.py'

val_dataloader = test_dataloader = dict(
    dataset=dict(ann_file='annotations/lvis_v1_val-large.json'))
val_evaluator = test_evaluator = dict(
    ann_file='data/toy_lvis/annotations/lvis_v1_val-large.json')
