# Stage 2 of two-stage contrastive training (SupCon's protocol, Khosla et al.,
# NeurIPS 2020): a linear classifier on the frozen CIFAR ResNet of a stage-1
# checkpoint. The backbone's weights come from the checkpoint through
# MMEngine's Pretrained init (keys under 'backbone.'; the projector and BCL's
# prototypes are dropped); frozen_stages=3 and norm_eval freeze every weight
# and every BatchNorm's running statistics. The configs set the depth, the
# number of classes and the checkpoint.
model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='mmlt.CifarResNet',
        depth=32,
        frozen_stages=3,
        norm_eval=True,
        init_cfg=dict(type='Pretrained', checkpoint=None,
                      prefix='backbone.')),
    # pooled feature, then MMPretrain's parameter-free BatchNorm of MAE's
    # linear probing (He et al., CVPR 2022): the probe sees features of one
    # scale whatever the stage-1 loss made of them (still a linear model)
    neck=[
        dict(type='GlobalAveragePooling'),
        dict(type='ClsBatchNormNeck', input_features=64),
    ],
    # plain cross-entropy, as in SupCon's linear evaluation; logit
    # adjustment: --cfg-options model.head.loss.type=mmlt.LogitAdjustLoss
    head=dict(
        type='LinearClsHead',
        num_classes=100,
        in_channels=64,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0)))
optim_wrapper = dict(
    type='mmlt.SkipNonFiniteOptimWrapper',
    optimizer=dict(
        type='SGD', lr=0.1, momentum=0.9, weight_decay=0, nesterov=True))
val_cfg = None
test_cfg = dict()
