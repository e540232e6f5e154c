"""The toy LVIS's large validation set (issue 27, part 5): at least 400
images, generated like the default one from its own seeded generator, so
the training set and the default validation set do not change."""
import filecmp
import hashlib
import json
import os.path as osp

import pytest

pytest.importorskip('lvis')

from test_toy_lvis_pipeline import (FASHION_MNIST, TOY_KWARGS,  # noqa: E402
                                    load_builder)

pytestmark = pytest.mark.skipif(
    not osp.isdir(FASHION_MNIST),
    reason='Fashion-MNIST IDX files (Debian dataset-fashion-mnist) missing')


def digest(path):
    with open(path, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()


def test_large_val_is_seeded_and_leaves_the_toy_set_alone(tmp_path):
    from lvis import LVIS
    builder = load_builder()
    root = str(tmp_path / 'a')
    builder.build_toy_lvis(root, FASHION_MNIST, **TOY_KWARGS)
    annotations = osp.join(root, 'annotations')
    before = {name: digest(osp.join(annotations, name))
              for name in ('lvis_v1_train.json', 'lvis_v1_val.json')}
    info = builder.add_large_val(root, FASHION_MNIST, num_images=400,
                                 seed=TOY_KWARGS['seed'])
    after = {name: digest(osp.join(annotations, name)) for name in before}
    assert after == before
    assert info['images'] == 400

    large = LVIS(info['path'])
    train = LVIS(osp.join(annotations, 'lvis_v1_train.json'))
    default_val = LVIS(osp.join(annotations, 'lvis_v1_val.json'))
    assert large.dataset['categories'] == train.dataset['categories']
    assert not set(large.get_img_ids()) & set(default_val.get_img_ids())
    # every category in the same number of images (80 = 400 x 2 / 10),
    # federated fields as in the default set
    images_per_category = [
        len(set(large.cat_img_map[cat])) for cat in large.get_cat_ids()
    ]
    assert max(images_per_category) == 80
    assert min(images_per_category) >= 75  # a few objects may not fit
    for image in large.dataset['images']:
        present = {ann['category_id'] for ann in large.img_ann_map[image['id']]}
        assert not present & set(image['neg_category_ids'])
        assert osp.isfile(osp.join(root, 'val2017', image['file_name']))

    # the same seed, the same set; another seed, another one
    again = str(tmp_path / 'b')
    builder.build_toy_lvis(again, FASHION_MNIST, **TOY_KWARGS)
    again_info = builder.add_large_val(again, FASHION_MNIST, num_images=400,
                                       seed=TOY_KWARGS['seed'])
    assert digest(again_info['path']) == digest(info['path'])
    first = large.dataset['images'][0]['file_name']
    assert filecmp.cmp(osp.join(root, 'val2017', first),
                       osp.join(again, 'val2017', first), shallow=False)
    other = builder.add_large_val(again, FASHION_MNIST, num_images=400,
                                  seed=TOY_KWARGS['seed'] + 1)
    with open(other['path']) as f:
        assert json.load(f)['annotations'] != large.dataset['annotations']


def test_large_val_needs_the_toy_set(tmp_path):
    with pytest.raises(FileNotFoundError, match='build the toy LVIS first'):
        load_builder().add_large_val(str(tmp_path), FASHION_MNIST)
