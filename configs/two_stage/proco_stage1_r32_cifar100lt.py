# Two-stage contrastive training on CIFAR-100-LT (IF 100), the setting of
# ProCo's batch-size study (Du et al., TPAMI 2024), stage 1: ResNet-32 and
# the 64-512-128 projector trained with the ProCo loss alone (tau 0.1) on two
# SimCLR-style views; no classifier loss. The estimator and its two-epoch
# window work as in one-stage training. ProCo's CIFAR schedule (SGD, lr 0.3
# at batch 256, wd 2e-4, 200 epochs, warm-up 5, x0.1 at 160/180).
# Stage 2: linear-probe_r32_cifar100lt.py.
#
#   python tools/train.py configs/two_stage/proco_stage1_r32_cifar100lt.py
_base_ = ['../proco_r32_cifar100lt.py']

model = dict(
    head=dict(
        loss=None,  # every view is a contrastive view
        contrast_loss=dict(
            _delete_=True,
            type='mmlt.ProCoLoss',
            temperature=0.1,
            loss_weight=1.0)))
train_dataloader = dict(
    dataset=dict(pipeline=[
        dict(
            type='MultiView',
            num_views=2,
            transforms=[_base_.contrast_view]),
        dict(type='PackInputs'),
    ]))
train_cfg = dict(val_interval=201)
# nothing to evaluate without a classifier: stage 2 reports accuracy
val_dataloader = val_cfg = val_evaluator = None
test_dataloader = test_cfg = test_evaluator = None
