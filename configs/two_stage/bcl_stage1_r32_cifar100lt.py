# Stage 1 with BCL (Zhu et al., CVPR 2022) on CIFAR-100-LT (IF 100):
# proco_stage1_r32_cifar100lt.py with the balanced contrastive loss, tau 0.1.
# Without a classifier loss, the class-complement prototypes
# normalize(MLP(W_c)) are learnt through the BCL loss alone (see
# bcl_stage1_fashionmnistlt.py); stage 2 drops them.
_base_ = ['./proco_stage1_r32_cifar100lt.py']

model = dict(
    head=dict(
        contrast_loss=dict(
            _delete_=True,
            type='mmlt.BCLLoss',
            temperature=0.1,
            loss_weight=1.0)))
