"""The toy LVIS builder, and the whole pipeline on it: tools/train.py trains
2 iterations and evaluates with the official LVIS evaluation; a 2-process
gloo run through tools/dist_train.sh keeps the vMF estimators identical."""
import importlib.util
import os
import os.path as osp
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

pytest.importorskip('mmdet')
pytest.importorskip('lvis')

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..', '..'))
HERE = osp.dirname(osp.abspath(__file__))
FASHION_MNIST = '/usr/share/datasets/fashion-mnist'
TOY_CONFIG = osp.join(REPO, 'configs', 'lvis', 'toy',
                      'mask-rcnn_r18-tiny_fpn_proco_toy-lvis.py')
TOY_KWARGS = dict(n_max=4, imb_factor=4, val_images_per_category=1, seed=1)

pytestmark = pytest.mark.skipif(
    not osp.isdir(FASHION_MNIST),
    reason='Fashion-MNIST IDX files (Debian dataset-fashion-mnist) missing')


def load_builder():
    path = osp.join(REPO, 'tools', 'dataset_converters', 'make_toy_lvis.py')
    spec = importlib.util.spec_from_file_location('make_toy_lvis', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def toy_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('toy_lvis'))
    load_builder().build_toy_lvis(root, FASHION_MNIST, **TOY_KWARGS)
    return root


def test_toy_lvis_has_lvis_v1_format(toy_root):
    import cv2
    from lvis import LVIS

    from mmlt.datasets.lt_base import make_lt_counts
    builder = load_builder()
    train = LVIS(osp.join(toy_root, 'annotations', 'lvis_v1_train.json'))
    val = LVIS(osp.join(toy_root, 'annotations', 'lvis_v1_val.json'))
    # long-tailed training images per category, as the profile says
    image_counts = [
        len(set(train.cat_img_map[cat])) for cat in train.get_cat_ids()
    ]
    assert image_counts == make_lt_counts(4, 10, 4)
    for cat, count in zip(train.load_cats(None), image_counts):
        assert cat['image_count'] == count
        assert cat['frequency'] == ('r' if count <= 10 else
                                    'c' if count <= 100 else 'f')
    assert val.dataset['categories'] == train.dataset['categories']
    # every category appears in the validation images
    assert all(len(val.cat_img_map[cat]) > 0 for cat in val.get_cat_ids())

    for api, folder in ((train, 'train2017'), (val, 'val2017')):
        for image in api.dataset['images']:
            assert image['coco_url'].endswith(
                f'{folder}/{image["file_name"]}')
            pixels = cv2.imread(
                osp.join(toy_root, folder, image['file_name']),
                cv2.IMREAD_GRAYSCALE)
            assert pixels.shape == (image['height'], image['width'])
            anns = api.img_ann_map[image['id']]
            present = {ann['category_id'] for ann in anns}
            assert present and not present & set(image['neg_category_ids'])
            assert set(image['not_exhaustive_category_ids']) <= present
            union = np.zeros(pixels.shape, dtype=bool)
            for ann in anns:
                mask = api.ann_to_mask(ann).astype(bool)
                # the annotation covers a bright Fashion-MNIST object
                assert pixels[mask].mean() > 60
                ys, xs = np.nonzero(mask)
                x, y, w, h = ann['bbox']
                assert abs(x - xs.min()) <= 1 and abs(y - ys.min()) <= 1
                assert abs(x + w - xs.max() - 1) <= 1
                assert abs(y + h - ys.max() - 1) <= 1
                assert ann['area'] == pytest.approx(mask.sum(), rel=0.15)
                union |= mask
            if not image['not_exhaustive_category_ids']:
                # exhaustive: nothing bright is left unannotated
                assert (pixels[~union] > 120).mean() < 0.01
    assert builder.CATEGORY_NAMES[0] == train.load_cats([1])[0]['name']


def write_config(tmp_path, toy_root, extra='', base=TOY_CONFIG,
                 name='toy_test_config.py'):
    data_root = toy_root.rstrip('/') + '/'
    path = tmp_path / name
    path.write_text(f'''
_base_ = {base!r}
data_root = {data_root!r}
train_dataloader = dict(
    batch_size=2,
    dataset=dict(dataset=dict(data_root=data_root, indices=4)))
val_dataloader = dict(batch_size=2, dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/lvis_v1_val.json')
test_evaluator = val_evaluator
train_cfg = dict(max_epochs=1, val_interval=1)
default_hooks = dict(
    logger=dict(interval=1), checkpoint=dict(interval=1))
# the toy ProCo config's hooks; 4 training images do not hold all 10
# classes, so the stream prior needs a pseudo-count
custom_hooks = [
    dict(type='mmlt.ClassCountsHook', prior='stream', pseudo_count=1),
    dict(type='mmlt.VMFWindowHook'),
    dict(type='mmlt.ExactResumeHook'),
    dict(type='mmlt.CheckpointCheckHook'),
]
{extra}
''')
    return str(path)


def child_env(**extra):
    env = dict(os.environ)
    env['OMP_NUM_THREADS'] = '1'
    env['PYTHONPATH'] = os.pathsep.join(
        [REPO, HERE, env.get('PYTHONPATH', '')])
    env.update(extra)
    return env


def train_two_iterations(config, work_dir, *extra):
    """tools/train.py on the toy set: it must finish its 2 iterations with
    the contrastive loss in the log; returns the log."""
    out = subprocess.run(
        [
            sys.executable,
            osp.join(REPO, 'tools', 'train.py'), config, '--work-dir',
            str(work_dir), *extra
        ],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=600)
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-4000:]
    assert re.search(r'Epoch\(train\) \[1\]\[2/2\]', log), log[-3000:]
    assert 'loss_contrast' in log
    return log


@pytest.mark.slow
def test_train_two_iterations_and_lvis_eval(tmp_path, toy_root):
    from lvis_reference import lvis_class_counts
    config = write_config(tmp_path, toy_root)
    work_dir = tmp_path / 'work'
    log = train_two_iterations(config, work_dir)
    # the official LVIS evaluation printed and returned AP, APr, APc, APf
    for group in ('r', 'c', 'f'):
        assert re.search(rf'catIds=\s*{group}\] = ', log)
    metrics = {}
    for key, value in re.findall(r'lvis/((?:bbox|segm)_AP[rcf]?): (-?[\d.]+)',
                                 log):
        metrics[key] = float(value)
    for key in ('bbox_AP', 'bbox_APr', 'bbox_APc', 'bbox_APf', 'segm_AP'):
        assert key in metrics and -1.0 <= metrics[key] <= 1.0, metrics
    # and AP-fixed, AP-pool with the per-class files (mmlt.LVISFixedMetric)
    for key in ('bbox_fixed_AP', 'segm_fixed_APr', 'bbox_pool_AP',
                'segm_pool_AP'):
        assert re.search(rf'lvis/{key}: -?[\d.]+', log), key
    assert (work_dir / 'lvis_per_class_ap.csv').exists()
    assert (work_dir / 'lvis_per_class_ap.png').exists()

    checkpoint = torch.load(work_dir / 'epoch_1.pth', map_location='cpu')
    state = checkpoint['state_dict']
    # ClassCountsHook gave both losses the prior of the sampled stream: the
    # instances of every index of the repeat-factor dataset, counted one by
    # one, plus the pseudo-count
    counts = stream_counts_by_loop(config) + 1
    counts = torch.tensor(counts, dtype=torch.float64)
    # ... which differs from the file's counts of the 4 images
    assert counts.tolist() != (np.asarray(
        lvis_class_counts(
            osp.join(toy_root, 'annotations', 'lvis_v1_train.json'),
            'instance')) + 1).tolist()
    torch.testing.assert_close(
        state['roi_head.bbox_head.contrast_branch.loss.log_prior'],
        torch.log(counts / counts.sum()))
    adjustment = state['roi_head.bbox_head.loss_cls.log_prior']
    torch.testing.assert_close(adjustment[:-1],
                               torch.log(counts / counts.mean()))
    assert adjustment[-1] == 0
    # the estimator counted the foreground RoIs of the two iterations
    # (add_gt_as_proposals: at least one per ground-truth box)
    counted = state['roi_head.bbox_head.contrast_branch.loss.estimator.'
                    'current_counts'].sum().item()
    assert counted >= 2 * 2


@pytest.mark.slow
def test_branch_with_weight_zero_trains_the_la_detector(tmp_path, toy_root):
    """Paired seeds end to end: LA + ProCo with loss weight 0 trains, bit
    for bit, the LA detector (same initial weights, a zero gradient from the
    branch), so the ablation's weight-0 row is LA's."""
    la_config = osp.join(REPO, 'configs', 'lvis', 'toy',
                         'mask-rcnn_r18-tiny_fpn_la_toy-lvis.py')
    no_val = 'train_cfg = dict(val_interval=10)\nrandomness = dict(seed=0)\n'
    configs = dict(
        la=write_config(tmp_path, toy_root, no_val, la_config, 'la.py'),
        zero=write_config(
            tmp_path, toy_root, no_val + 'model = dict(roi_head=dict('
            'bbox_head=dict(contrast_loss=dict(loss_weight=0.0))))',
            name='zero.py'))
    states = {}
    for name, config in configs.items():
        out = subprocess.run(
            [sys.executable, osp.join(REPO, 'tools', 'train.py'), config,
             '--work-dir', str(tmp_path / name)],
            capture_output=True, text=True, env=child_env(), timeout=600)
        assert out.returncode == 0, (out.stdout + out.stderr)[-4000:]
        states[name] = torch.load(tmp_path / name / 'epoch_1.pth',
                                  map_location='cpu')['state_dict']
    la, zero = states['la'], states['zero']
    initial = [key for key in la if 'bbox_head.shared_fcs' in key]
    assert initial and all(key in zero for key in la)
    differ = [key for key in la if not torch.equal(la[key], zero[key])]
    assert differ == [], differ[:5]
    # the branch itself did run (its estimator counted RoIs)
    assert zero['roi_head.bbox_head.contrast_branch.loss.estimator.'
                'current_counts'].sum() > 0


def stream_counts_by_loop(config):
    """Per-class instances over every index of the config's (repeat-factor
    wrapped) training set, one index at a time."""
    from mmengine.config import Config
    from mmengine.registry import DATASETS, init_default_scope
    init_default_scope('mmdet')
    dataset = DATASETS.build(Config.fromfile(config).train_dataloader.dataset)
    counts = np.zeros(10)
    for index in range(len(dataset)):
        for instance in dataset.get_data_info(index)['instances']:
            counts[instance['bbox_label']] += 1
    return counts


def test_two_process_gloo_run_keeps_estimators_identical(
        tmp_path, toy_root, port):
    extra = '''
train_dataloader.update(batch_size=1)
custom_imports = dict(
    imports=['mmlt.integrations.mmdet', 'mmlt_det_dist_hook'],
    allow_failed_imports=False)
custom_hooks = [
    dict(type='mmlt.ClassCountsHook'),
    dict(type='mmlt.VMFWindowHook'),
    dict(type='SaveRankStateHook'),
]
'''
    config = write_config(tmp_path, toy_root, extra)
    work_dir = tmp_path / 'dist_work'
    out = subprocess.run(
        [
            'bash',
            osp.join(REPO, 'tools', 'dist_train.sh'), config, '2',
            '--work-dir',
            str(work_dir), '--no-validate'
        ],
        capture_output=True,
        text=True,
        env=child_env(
            PYTHON=sys.executable, PORT=str(port), MASTER_ADDR='127.0.0.1'),
        timeout=600)
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-4000:]
    ranks = [
        torch.load(work_dir / f'rank{rank}.pth', map_location='cpu')
        for rank in (0, 1)
    ]
    # each rank gave its own foreground RoIs (>= 1 per image, 2 images)
    assert all(rank['num_foreground'] >= 2 for rank in ranks)
    keys = [key for key in ranks[0]['state'] if '.estimator.' in key]
    assert any(key.endswith('current_sums') for key in keys)
    for key in keys:
        assert torch.equal(ranks[0]['state'][key], ranks[1]['state'][key]), \
            key
    counts_key = next(key for key in keys if key.endswith('current_counts'))
    # both ranks counted the foreground RoIs of both ranks
    total = sum(rank['num_foreground'] for rank in ranks)
    assert ranks[0]['state'][counts_key].sum().item() == total
    for key in ranks[0]['state']:
        if key.endswith('log_prior'):
            assert torch.isfinite(ranks[0]['state'][key]).all()
            assert torch.equal(ranks[0]['state'][key],
                               ranks[1]['state'][key])


@pytest.mark.slow
def test_amp_training_runs_on_the_cpu_in_bfloat16(tmp_path, toy_root):
    """--amp on a machine without a GPU: mmlt.AmpOptimWrapper autocasts to
    bfloat16 (MMEngine's AmpOptimWrapper refuses to start without a GPU)."""
    config = write_config(
        tmp_path, toy_root, extra='val_cfg = None\nval_dataloader = None\n'
        'val_evaluator = None\n')
    train_two_iterations(config, tmp_path / 'work', '--amp')
    checkpoint = torch.load(tmp_path / 'work' / 'epoch_1.pth',
                            map_location='cpu', weights_only=False)
    assert all(torch.isfinite(v).all()
               for v in checkpoint['state_dict'].values()
               if v.is_floating_point())
