# Stage 1 of two-stage training with SupCon (Khosla et al., NeurIPS 2020):
# proco_stage1_fashionmnistlt.py with the supervised contrastive loss
# (tau 0.1), whose positives and negatives are the other samples of the batch.
_base_ = ['./proco_stage1_fashionmnistlt.py']

model = dict(
    head=dict(
        contrast_loss=dict(
            _delete_=True,
            type='mmlt.SupConLoss',
            temperature=0.1,
            loss_weight=1.0)))
