# CIFAR-100-LT semi-supervised split (DASO protocol): N1 = 150 labeled and
# M1 = 300 unlabeled images in the largest class, imbalance 10 for both,
# consistent profile: 5,835 labeled and 11,720 unlabeled images.
_base_ = './cifar10lt_ssl.py'

dataset_type = 'mmlt.CIFAR100LT'
data_root = 'data/cifar100'
labeled_dataset = dict(
    type=dataset_type, data_root=data_root, split='train', n_max=150,
    imb_factor=10)
unlabeled_dataset = dict(
    labeled_dataset,
    unlabeled=dict(n_max=300, imb_factor=10, profile='consistent'))

train_dataloader = dict(
    dataset=dict(
        labeled=dict(labeled_dataset, pipeline=_base_.ssl_train_pipeline),
        unlabeled=dict(unlabeled_dataset,
                       pipeline=_base_.ssl_train_pipeline)))
val_dataloader = dict(
    dataset=dict(type=dataset_type, data_root=data_root))
val_evaluator = dict(train_dataset=labeled_dataset)
test_dataloader = val_dataloader
test_evaluator = val_evaluator
model = dict(head=dict(num_classes=100))
