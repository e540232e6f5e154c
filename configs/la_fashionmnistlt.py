# Logit-adjustment baseline (Menon et al., ICLR 2021) on Fashion-MNIST-LT
# (n_max 1000, IF 100) on the CPU, for the README table: ce_fashionmnistlt.py
# with the logit-adjusted loss (tau 1), i.e. the ProCo demo without its
# contrastive branch.
_base_ = ['./proco_fashionmnistlt.py']

model = dict(
    head=dict(
        loss=dict(type='mmlt.LogitAdjustLoss', tau=1.0),
        contrast_loss=None))
train_dataloader = dict(
    dataset=dict(pipeline=_base_.cls_view + [dict(type='PackInputs')]))
