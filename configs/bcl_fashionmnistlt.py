# BCL (Zhu et al., CVPR 2022) on Fashion-MNIST-LT (n_max 1000, IF 100) on the
# CPU, for the README table: proco_fashionmnistlt.py (CIFAR ResNet-20,
# projection 64-512-128, same views and schedule) with the BCL loss and
# BCL's CIFAR settings: tau 0.1, lambda 2.0.
_base_ = ['./proco_fashionmnistlt.py']

model = dict(
    head=dict(
        contrast_loss=dict(
            _delete_=True,
            type='mmlt.BCLLoss',
            temperature=0.1,
            loss_weight=2.0)))
