# The classifier stage's schedule of Kang et al. (ICLR 2020): the ImageNet-LT
# optimizer (SGD lr 0.1, momentum 0.9, weight decay 5e-4; Kang et al.: lr 0.2
# at batch 512, the dataset bases set the batch it is for) for 10 epochs,
# cosine decay to 0, no warm-up; validated after every epoch (on the
# validation split).
_base_ = ['../../_base_/schedules/imagenet_lt_sgd_cos_90e.py']

classifier_epochs = 10
param_scheduler = [
    dict(
        type='CosineAnnealingLR',
        T_max=classifier_epochs,
        by_epoch=True,
        begin=0,
        end=classifier_epochs),
]
train_cfg = dict(max_epochs=classifier_epochs, val_interval=1)
