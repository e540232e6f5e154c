# ResNet-50 (torchvision layout: stride in the 3x3 convolutions, no zero-init
# of the last BN of each block, as in the ProCo/BCL code) with the two-branch
# head of ProCo and BCL on ImageNet-LT and iNaturalist: a cosine classifier
# (scale 30) on the 2048-d pooled feature, and a 2048-2048-1024 projection MLP
# for the contrastive views. The configs set num_classes, the classifier loss
# and the contrastive loss (none here: the head skips the contrastive branch
# when contrast_loss is not given).
model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='ResNet',
        depth=50,
        num_stages=4,
        out_indices=(3, ),
        style='pytorch',
        zero_init_residual=False),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='mmlt.ContrastiveClsHead',
        num_classes=1000,
        in_channels=2048,
        proj_dims=(2048, 1024),
        classifier='cosine',
        cosine_scale=30.0,
        loss=dict(type='mmlt.LogitAdjustLoss', tau=1.0)),
)
