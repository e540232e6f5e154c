# Two-stage contrastive training (the protocol of SupCon, Khosla et al.,
# NeurIPS 2020, and of ProCo's batch-size study, Du et al., TPAMI 2024),
# stage 1: the backbone and projector learn from the ProCo loss alone, on
# two contrastive views of each Fashion-MNIST-LT image (n_max 1000, IF 100).
# No classifier loss; the estimator, its two-epoch window (VMFWindowHook) and
# the class prior (ClassCountsHook) work as in one-stage training.
# Stage 2: linear-probe_fashionmnistlt.py on the checkpoint this writes.
#
#   python tools/train.py configs/two_stage/proco_stage1_fashionmnistlt.py
_base_ = ['../proco_fashionmnistlt.py']

stage1_epochs = 8
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
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=0.1,
        by_epoch=True,
        begin=0,
        end=1,
        convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        T_max=stage1_epochs - 1,
        by_epoch=True,
        begin=1,
        end=stage1_epochs),
]
train_cfg = dict(max_epochs=stage1_epochs, val_interval=stage1_epochs + 1)
# nothing to evaluate without a classifier: stage 2 reports accuracy
val_dataloader = val_cfg = val_evaluator = None
test_dataloader = test_cfg = test_evaluator = None
# the learning rate is for a batch of 64; the batch-size study scales it
# linearly (MMEngine's auto_scale_lr: lr * batch / 64)
auto_scale_lr = dict(base_batch_size=64)
