# Cross-entropy baseline on Fashion-MNIST-LT (n_max 1000, IF 100) on the CPU,
# for the README table: proco_fashionmnistlt.py (CIFAR ResNet-20, same CPU
# schedule) trained on the classifier view alone with plain CE
# (LogitAdjustLoss with tau 0), no contrastive branch.
_base_ = ['./proco_fashionmnistlt.py']

model = dict(
    head=dict(
        loss=dict(type='mmlt.LogitAdjustLoss', tau=0.0),
        contrast_loss=None))
train_dataloader = dict(
    dataset=dict(pipeline=_base_.cls_view + [dict(type='PackInputs')]))
