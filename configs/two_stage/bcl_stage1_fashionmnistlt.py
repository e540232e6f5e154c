# Stage 1 of two-stage training with BCL (Zhu et al., CVPR 2022):
# proco_stage1_fashionmnistlt.py with the balanced contrastive loss (tau 0.1).
# BCL's class-complement prototypes are normalize(MLP(W_c)) of the head's
# classifier rows W_c. Stage 1 has no classifier loss, so W and the prototype
# MLP are learnt through the BCL loss alone: the prototypes are learnable
# class centres in the contrastive space, present in every batch. Stage 2
# drops them with the projector and trains a new linear classifier.
# loss_weight 1 (not BCL's lambda 2): with one loss, a weight only rescales
# the learning rate, and the three methods share one.
_base_ = ['./proco_stage1_fashionmnistlt.py']

model = dict(
    head=dict(
        contrast_loss=dict(
            _delete_=True,
            type='mmlt.BCLLoss',
            temperature=0.1,
            loss_weight=1.0)))
