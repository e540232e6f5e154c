# The toy LA detector evaluated on the toy set's large validation set (400
# images: make_toy_lvis.py --large-val-images 400, docs/detection.md), the
# reference of the LA + ProCo ablations next to it (issue 27, part 5).
_base_ = '../mask-rcnn_r18-tiny_fpn_la_toy-lvis.py'

val_dataloader = test_dataloader = dict(
    dataset=dict(ann_file='annotations/lvis_v1_val-large.json'))
val_evaluator = test_evaluator = dict(
    ann_file='data/toy_lvis/annotations/lvis_v1_val-large.json')
