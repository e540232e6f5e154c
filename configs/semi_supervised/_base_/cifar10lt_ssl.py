# CIFAR-10-LT semi-supervised split (DARP / DASO protocol): N1 = 1500
# labeled and M1 = 3000 unlabeled images in the largest class, imbalance 100
# for both, consistent profile (3,720 labeled, 7,443 unlabeled images, as
# mmlt's split code makes them; uniform: 30,000 unlabeled; the
# *_reversed.py / *_uniform.py configs change the unlabeled profile).
_base_ = './cifar_ssl.py'

dataset_type = 'mmlt.CIFAR10LT'
data_root = 'data/cifar10'
labeled_dataset = dict(
    type=dataset_type, data_root=data_root, split='train', n_max=1500,
    imb_factor=100)
unlabeled_dataset = dict(
    labeled_dataset,
    unlabeled=dict(n_max=3000, imb_factor=100, profile='consistent'))

train_dataloader = dict(
    batch_size=_base_.labeled_batch * (1 + _base_.mu),
    num_workers=8,
    persistent_workers=True,
    pin_memory=True,
    sampler=dict(
        type='mmlt.MultiSourceSampler',
        batch_size=_base_.labeled_batch * (1 + _base_.mu),
        source_ratio=[1, _base_.mu],
        epoch_length=_base_.epoch_length),
    dataset=dict(
        type='mmlt.SemiSupervisedDataset',
        labeled=dict(labeled_dataset, pipeline=_base_.ssl_train_pipeline),
        unlabeled=dict(unlabeled_dataset,
                       pipeline=_base_.ssl_train_pipeline)))
val_dataloader = dict(
    batch_size=256,
    num_workers=4,
    persistent_workers=True,
    pin_memory=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type, data_root=data_root, split='test',
        pipeline=_base_.test_pipeline))
val_evaluator = dict(type='mmlt.LongTailAccuracy',
                     train_dataset=labeled_dataset)
test_dataloader = val_dataloader
test_evaluator = val_evaluator
