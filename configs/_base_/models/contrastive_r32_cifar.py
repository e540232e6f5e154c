# CIFAR ResNet-32 (16-32-64 channels) with the two-branch head of ProCo and
# BCL: a linear classifier on the 64-d pooled feature, and a 64-512-128
# projection MLP for the contrastive views. The configs set num_classes, the
# classifier loss and the contrastive loss (none here: the head skips the
# contrastive branch when contrast_loss is not given).
model = dict(
    type='ImageClassifier',
    backbone=dict(type='mmlt.CifarResNet', depth=32),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='mmlt.ContrastiveClsHead',
        num_classes=100,
        in_channels=64,
        proj_dims=(512, 128),
        classifier='linear',
        loss=dict(type='mmlt.LogitAdjustLoss', tau=1.0)),
)
