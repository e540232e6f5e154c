# CIFAR-10-LT with one (classifier) view per training image: for the CE and
# LA baselines.
_base_ = ['./cifar10lt.py']

train_dataloader = dict(
    dataset=dict(pipeline=_base_.single_view_train_pipeline))
