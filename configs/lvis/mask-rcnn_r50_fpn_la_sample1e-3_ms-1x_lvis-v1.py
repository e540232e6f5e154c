# Mask R-CNN R50-FPN on LVIS v1 with a logit-adjusted RoI classifier
# (Menon et al., ICLR 2021): object classes are adjusted by
# log(n_c / mean n), background is not (mmlt.DetLogitAdjustLoss). No
# contrastive branch: the reference point for the ProCo and BCL configs.
_base_ = './_base_/mask-rcnn_r50_fpn_class-counts_lvis-v1.py'

model = dict(
    roi_head=dict(
        bbox_head=dict(
            loss_cls=dict(
                _delete_=True, type='mmlt.DetLogitAdjustLoss', tau=1.0))))
