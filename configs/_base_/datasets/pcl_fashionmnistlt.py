# Fashion-MNIST-LT (n_max 1000, imbalance factor 100: 2,478 training images)
# for self-supervised pre-training: the labels are not used for training.
# - train_dataloader: two augmented views per image (query and key);
# - cluster_dataloader: the same images in the same order, un-augmented, for
#   PrototypeClusteringHook (dataset order = the sample_idx the loss uses);
# - knn_*_dataloader: labelled features for tools/analysis_tools/knn_eval.py
#   (k-NN on the long-tailed training set, tested on the balanced 10,000).
dataset_type = 'mmlt.FashionMNISTLT'
data_root = '/usr/share/datasets/fashion-mnist'

lt_args = dict(n_max=1000, imb_factor=100, imb_type='exp', seed=0)
train_dataset = dict(
    type=dataset_type, data_root=data_root, split='train', **lt_args)
test_dataset = dict(type=dataset_type, data_root=data_root, split='test')

data_preprocessor = dict(
    type='SelfSupDataPreprocessor',
    mean=[72.94, 72.94, 72.94],
    std=[90.0, 90.0, 90.0],
    to_rgb=False)

# SimCLR/MoCo v2-style views, mild for 28x28 grayscale images.
view_pipeline = [
    dict(type='RandomResizedCrop', scale=28, crop_ratio_range=(0.3, 1.0)),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(
        type='RandomApply',
        transforms=[dict(type='ColorJitter', brightness=0.4, contrast=0.4)],
        prob=0.8),
]
train_pipeline = [
    dict(type='MultiView', num_views=2, transforms=[view_pipeline]),
    dict(type='PackInputs'),
]
test_pipeline = [dict(type='PackInputs')]

train_dataloader = dict(
    batch_size=64,
    num_workers=1,
    persistent_workers=True,
    drop_last=True,  # MoCo's queue takes whole batches
    sampler=dict(type='mmlt.ResumableSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(train_dataset, pipeline=train_pipeline))

cluster_dataloader = dict(
    batch_size=256,
    num_workers=0,
    collate_fn=dict(type='default_collate'),
    dataset=dict(train_dataset, pipeline=test_pipeline))

knn_train_dataloader = dict(
    batch_size=256,
    num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(train_dataset, pipeline=test_pipeline))
knn_test_dataloader = dict(
    batch_size=256,
    num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(test_dataset, pipeline=test_pipeline))
