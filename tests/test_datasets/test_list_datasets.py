import os
import os.path as osp

import numpy as np
import pytest
from PIL import Image

from mmlt.datasets import (DatasetFilesNotFoundError, INaturalist2018,
                           ImageNetLT, LongTailImageList, PlacesLT)
from mmlt.registry import DATASETS


def _make_tree(root, entries):
    """Write tiny JPEGs for ``entries`` [(relative path, label)] under
    root/images and the split file root/split.txt."""
    for rel, _ in entries:
        path = osp.join(root, 'images', rel)
        os.makedirs(osp.dirname(path), exist_ok=True)
        Image.fromarray(np.full((4, 5, 3), 7, np.uint8)).save(path)
    with open(osp.join(root, 'split.txt'), 'w') as f:
        for rel, label in entries:
            f.write(f'{rel} {label}\n')
        f.write('\n')  # trailing blank line is allowed


ENTRIES = [('train/n01/a.JPEG', 0), ('train/n01/b.JPEG', 0),
           ('train/n02/c d.JPEG', 1), ('train/n03/e.JPEG', 999)]


def test_imagenet_lt_parses_and_joins(tmp_path):
    _make_tree(str(tmp_path), ENTRIES)
    ds = ImageNetLT(
        ann_file='split.txt', data_root=str(tmp_path), data_prefix='images')
    assert len(ds) == 4
    assert ds.num_classes == 1000 and len(ds.metainfo['classes']) == 1000
    for i, (rel, label) in enumerate(ENTRIES):
        info = ds.get_data_info(i)
        assert info['gt_label'] == label
        assert osp.normpath(info['img_path']) == osp.normpath(
            osp.join(str(tmp_path), 'images', rel))
        assert osp.isfile(info['img_path'])
    counts = ds.class_counts
    assert len(counts) == 1000
    assert counts[0] == 2 and counts[1] == 1 and counts[999] == 1
    assert counts.sum() == 4
    assert ds.get_cat_ids(3) == [999]


def test_absolute_ann_file_and_dict_prefix(tmp_path):
    _make_tree(str(tmp_path), ENTRIES[:2])
    ds = PlacesLT(
        ann_file=str(tmp_path / 'split.txt'),
        data_prefix=dict(img_path=str(tmp_path / 'images')))
    assert ds.num_classes == 365
    assert ds.get_gt_labels().tolist() == [0, 0]


def test_class_names_from_file(tmp_path):
    _make_tree(str(tmp_path), [('x.png', 1), ('y.png', 2)])
    names = tmp_path / 'names.txt'
    names.write_text('cat\ndog\nbird\n')
    ds = LongTailImageList(
        ann_file='split.txt',
        data_root=str(tmp_path),
        data_prefix='images',
        num_classes=3,
        metainfo=dict(classes=str(names)))
    assert ds.metainfo['classes'] == ['cat', 'dog', 'bird']
    assert ds.class_counts.tolist() == [0, 1, 1]
    with pytest.raises(ValueError, match='2 names'):
        LongTailImageList(
            ann_file='split.txt',
            data_root=str(tmp_path),
            data_prefix='images',
            num_classes=3,
            metainfo=dict(classes=['cat', 'dog']))


def test_label_range_error(tmp_path):
    _make_tree(str(tmp_path), [('a.jpg', 0), ('b.jpg', 365), ('c.jpg', 400)])
    with pytest.raises(ValueError, match=r'\[0, 365\).*365, 400'):
        PlacesLT(
            ann_file='split.txt', data_root=str(tmp_path),
            data_prefix='images')
    # The same file is fine for iNaturalist's 8142 classes.
    ds = INaturalist2018(
        ann_file='split.txt', data_root=str(tmp_path), data_prefix='images')
    assert ds.num_classes == 8142 and ds.class_counts[400] == 1


def test_malformed_line(tmp_path):
    _make_tree(str(tmp_path), ENTRIES[:1])
    with open(tmp_path / 'split.txt', 'a') as f:
        f.write('train/n01/b.JPEG zero\n')
    with pytest.raises(ValueError, match='line 3'):
        ImageNetLT(
            ann_file='split.txt', data_root=str(tmp_path),
            data_prefix='images')


def test_missing_files_one_error(tmp_path):
    entries = [(f'img_{i}.jpg', i % 3) for i in range(12)]
    _make_tree(str(tmp_path), entries)
    for i in (2, 5, 6, 7, 8, 9, 11):
        os.remove(tmp_path / 'images' / f'img_{i}.jpg')
    with pytest.raises(DatasetFilesNotFoundError) as info:
        ImageNetLT(
            ann_file='split.txt', data_root=str(tmp_path),
            data_prefix='images')
    message = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    assert '7 of 12' in message and 'data_preparation.md' in message
    assert 'img_2.jpg' in message and 'img_8.jpg' in message
    # Only the first five missing paths are listed, present ones never.
    assert 'img_9.jpg' not in message and 'img_11.jpg' not in message
    assert 'img_3.jpg' not in message
    # Without the per-file check the list loads.
    ds = ImageNetLT(
        ann_file='split.txt',
        data_root=str(tmp_path),
        data_prefix='images',
        check_files=False)
    assert len(ds) == 12


def test_missing_ann_file_and_root(tmp_path):
    with pytest.raises(DatasetFilesNotFoundError, match='split file'):
        ImageNetLT(ann_file='nope.txt', data_root=str(tmp_path))
    (tmp_path / 'split.txt').write_text('a.jpg 0\n')
    with pytest.raises(DatasetFilesNotFoundError, match='image folder'):
        ImageNetLT(
            ann_file='split.txt', data_root=str(tmp_path),
            data_prefix='no_such_dir')
    with pytest.raises(ValueError, match='ann_file'):
        ImageNetLT(ann_file='')
    with pytest.raises(ValueError, match='num_classes'):
        LongTailImageList(ann_file=str(tmp_path / 'split.txt'))


def test_build_from_config(tmp_path):
    _make_tree(str(tmp_path), ENTRIES)
    ds = DATASETS.build(
        dict(
            type='mmlt.ImageNetLT',
            ann_file='split.txt',
            data_root=str(tmp_path),
            data_prefix=dict(img_path='images')))
    assert isinstance(ds, ImageNetLT) and len(ds) == 4
