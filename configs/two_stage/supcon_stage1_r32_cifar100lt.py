# Stage 1 with SupCon (Khosla et al., NeurIPS 2020) on CIFAR-100-LT (IF 100):
# proco_stage1_r32_cifar100lt.py with the supervised contrastive loss, tau 0.1.
_base_ = ['./proco_stage1_r32_cifar100lt.py']

model = dict(
    head=dict(
        contrast_loss=dict(
            _delete_=True,
            type='mmlt.SupConLoss',
            temperature=0.1,
            loss_weight=1.0)))
