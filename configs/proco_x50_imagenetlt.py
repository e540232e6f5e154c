# ProCo (Du et al., TPAMI 2024) on ImageNet-LT with ResNeXt-50 (32x4d): the
# recipe of proco_r50_imagenetlt.py (90 epochs). Paper: 58.0 top-1.
_base_ = ['./proco_r50_imagenetlt.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='ResNeXt',
        depth=50,
        groups=32,
        width_per_group=4,
        num_stages=4,
        out_indices=(3, ),
        style='pytorch',
        zero_init_residual=False))
