"""The LVIS v1 configs load and their RoI heads build (the full detectors
are exercised on the toy set)."""
import glob
import os.path as osp

import pytest

pytest.importorskip('mmdet')

from mmengine.config import Config  # noqa: E402

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..', '..'))
LVIS_CONFIGS = sorted(
    glob.glob(osp.join(REPO, 'configs', 'lvis', 'mask-rcnn_*.py')))
TOY_CONFIGS = sorted(
    glob.glob(osp.join(REPO, 'configs', 'lvis', 'toy', 'mask-rcnn_*.py')))

# name fragment -> (contrastive loss type, classifier loss type)
EXPECTED = {
    '_proco_': ('mmlt.ProCoLoss', 'mmlt.DetLogitAdjustLoss'),
    '_bcl_': ('mmlt.BCLLoss', 'mmlt.DetLogitAdjustLoss'),
    '_supcon_': ('mmlt.SupConLoss', 'CrossEntropyLoss'),
    '_seesaw-proco_': ('mmlt.ProCoLoss', 'SeesawLoss'),
    '_seesaw_': (None, 'SeesawLoss'),
    '_la_': (None, 'mmlt.DetLogitAdjustLoss'),
}


def expected_for(path):
    name = osp.basename(path)
    for fragment, expected in EXPECTED.items():
        if fragment in name:
            return expected
    return None, 'CrossEntropyLoss'


def test_all_variants_exist():
    names = {osp.basename(path) for path in LVIS_CONFIGS}
    for fragment in ('_proco_', '_bcl_', '_supcon_', '_seesaw-proco_',
                     '_seesaw_', '_la_', 'class-aware',
                     '_seesaw_sample1e-3_ms-2x', '_seesaw-proco_sample1e-3_ms-2x'):
        assert any(fragment in name for name in names), fragment
    assert 'mask-rcnn_r50_fpn_sample1e-3_ms-1x_lvis-v1.py' in names


@pytest.mark.parametrize(
    'path', LVIS_CONFIGS + TOY_CONFIGS, ids=osp.basename)
def test_config_roi_head_builds(path):
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    register_all_modules(init_default_scope=True)
    import mmlt.integrations.mmdet  # noqa: F401  (custom_imports)
    cfg = Config.fromfile(path)
    assert cfg.default_scope == 'mmdet'
    bbox_head = cfg.model.roi_head.bbox_head
    contrast, classifier = expected_for(path)
    assert bbox_head.loss_cls.type == classifier
    assert bbox_head.get('contrast_loss', {}).get('type') == contrast
    if contrast is not None:
        assert cfg.model.roi_head.type == 'mmlt.ContrastiveRoIHead'
        if '/toy/' not in path:
            assert cfg.model.roi_head.contrast_iou_thr == 0.7
        hooks = [hook['type'] for hook in cfg.custom_hooks]
        assert hooks[:2] == ['mmlt.ClassCountsHook', 'mmlt.VMFWindowHook']
        if '/toy/' not in path:
            # priors of the sampled stream (RFS repeats, class-aware draws)
            assert cfg.custom_hooks[0].prior == 'stream'
            # windows of 2000 iterations, not of a ~9k-iteration LVIS epoch
            assert cfg.custom_hooks[1].window_iters == 2000
            if contrast == 'mmlt.ProCoLoss':
                proco = bbox_head.contrast_loss
                assert proco.score_before_update
                assert proco.estimator.kappa_shrinkage == 100
                # the prior of the IoU >= 0.7 RoIs it sees (issue 27)
                assert proco.prior == 'estimator'
    if classifier.startswith('mmlt.') or contrast is not None:
        # the prior comes from the training set's annotation file
        dataset = cfg.train_dataloader.dataset
        dataset = dataset.get('dataset', dataset)
        assert dataset.type == 'mmlt.LVISV1WithClassCounts'
    num_classes = 10 if '/toy/' in path else 1203
    assert bbox_head.num_classes == num_classes
    if 'class-aware' in path:
        # epochs as long as the 1e-3 repeat-factor epochs: equal iterations
        assert cfg.train_dataloader.sampler.type == \
            'mmlt.RFSMatchedClassAwareSampler'
        assert cfg.train_dataloader.sampler.oversample_thr == 1e-3
        assert cfg.train_dataloader.dataset.pipeline[0].type == \
            'LoadImageFromFile'
    elif '/toy/' not in path:
        assert cfg.train_dataloader.dataset.type == 'mmlt.ClassBalancedDataset'
        assert cfg.train_dataloader.dataset.oversample_thr == 1e-3
    # LVIS AP, AP-fixed and AP-pool
    for evaluator in (cfg.val_evaluator, cfg.test_evaluator):
        assert evaluator.type == 'mmlt.LVISFixedMetric'
        assert evaluator.metric == ['bbox', 'segm']
        assert evaluator.get('dets_per_class', 10000) == 10000
    rcnn_test_cfg = cfg.model.test_cfg.rcnn
    assert cfg.model.roi_head.type in ('mmlt.PerClassTopKRoIHead',
                                       'mmlt.ContrastiveRoIHead')
    assert rcnn_test_cfg.max_per_img == -1
    # AP-fixed as Dave et al. run it: floor 1e-7, the metric's budget as
    # the head's per-class thresholds; the standard path gets MMDetection's
    # detections (score > 1e-4, the best per image)
    assert rcnn_test_cfg.score_thr == 1e-7
    assert rcnn_test_cfg.dets_per_class == cfg.val_evaluator.dets_per_class
    assert rcnn_test_cfg.standard_max_per_img >= \
        cfg.val_evaluator.max_dets_per_img
    assert rcnn_test_cfg.standard_score_thr == \
        cfg.val_evaluator.standard_score_thr == 1e-4
    # a periodic validation computes the standard AP only
    assert cfg.default_hooks.standard_ap_until_last.type == \
        'mmlt.StandardAPUntilLastHook'
    assert cfg.val_evaluator.max_dets_per_img == (50 if '/toy/' in path else
                                                  300)
    if '/toy/' not in path:
        # rank 0 evaluates AP-fixed while the others wait in a broadcast:
        # longer than NCCL's 10-minute default, merged into mmdet's env_cfg
        assert cfg.env_cfg.dist_cfg.timeout >= 3600
        assert cfg.env_cfg.dist_cfg.backend == 'nccl'
    if '/toy/' not in path:  # one LVIS val pass, after the last epoch
        epochs = 24 if '-2x_' in path else 12
        assert cfg.train_cfg.val_interval == cfg.train_cfg.max_epochs == \
            epochs
        milestones = cfg.param_scheduler[-1].milestones
        assert milestones == ([16, 22] if epochs == 24 else [8, 11])

    roi_head_cfg = cfg.model.roi_head.copy()
    roi_head_cfg.update(
        train_cfg=cfg.model.train_cfg.rcnn, test_cfg=cfg.model.test_cfg.rcnn)
    roi_head = MODELS.build(roi_head_cfg)
    if contrast is not None:
        assert roi_head.bbox_head.with_contrast
        assert type(roi_head.bbox_head.contrast_branch.loss).__name__ == \
            contrast.split('.')[-1]


ABLATION_DIR = osp.join(REPO, 'configs', 'lvis', 'toy', 'ablations')
VAL400 = 'data/toy_lvis/annotations/lvis_v1_val-large.json'
HEAD = 'model.roi_head.bbox_head.'
# ablation -> the only settings in which it differs from LA + ProCo (val400)
ABLATIONS = {
    'proco-w0': {HEAD + 'contrast_loss.loss_weight': 0.0},
    'proco-detached': {HEAD + 'contrast_input': 'detached'},
    'proco-separate-fc': {HEAD + 'contrast_input': 'separate'},
    'proco-w0.1-t0.2': {HEAD + 'contrast_loss.loss_weight': 0.1,
                        HEAD + 'contrast_loss.temperature': 0.2},
    'proco-iou0.5': {'model.roi_head.contrast_iou_thr': 0.5},
    'proco-noclip': {'optim_wrapper.clip_grad': None},
}
MISSING = object()


def flat(value, prefix=''):
    """A config as ``{dotted key: leaf value}``."""
    if not isinstance(value, dict):
        return {prefix[:-1]: value}
    leaves = {}
    for key, item in value.items():
        leaves.update(flat(item, f'{prefix}{key}.'))
    return leaves


def differences(path, base_path):
    ours = flat(Config.fromfile(path).to_dict())
    base = flat(Config.fromfile(base_path).to_dict())
    return {
        key: ours.get(key, MISSING)
        for key in set(ours) | set(base)
        if ours.get(key, MISSING) != base.get(key, MISSING)
    }


@pytest.mark.parametrize('name', sorted(ABLATIONS))
def test_ablation_changes_one_setting(name):
    path = osp.join(ABLATION_DIR,
                    f'mask-rcnn_r18-tiny_fpn_{name}_toy-lvis-val400.py')
    base = osp.join(ABLATION_DIR,
                    'mask-rcnn_r18-tiny_fpn_proco_toy-lvis-val400.py')
    changed = differences(path, base)
    if name == 'proco-noclip':  # the clip_grad dict became None
        changed = {k: v for k, v in changed.items()
                   if not k.startswith('optim_wrapper.clip_grad.')}
    assert changed == ABLATIONS[name]
    # and the RoI head builds
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    register_all_modules(init_default_scope=True)
    cfg = Config.fromfile(path)
    head_cfg = cfg.model.roi_head.copy()
    head_cfg.update(train_cfg=cfg.model.train_cfg.rcnn,
                    test_cfg=cfg.model.test_cfg.rcnn)
    bbox_head = MODELS.build(head_cfg).bbox_head
    assert bbox_head.with_contrast
    assert (bbox_head.contrast_fc is not None) == (name == 'proco-separate-fc')


@pytest.mark.parametrize('method', ['la', 'proco'])
def test_val400_configs_only_change_the_validation_set(method):
    toy = osp.join(REPO, 'configs', 'lvis', 'toy')
    changed = differences(
        osp.join(ABLATION_DIR,
                 f'mask-rcnn_r18-tiny_fpn_{method}_toy-lvis-val400.py'),
        osp.join(toy, f'mask-rcnn_r18-tiny_fpn_{method}_toy-lvis.py'))
    assert set(changed.values()) == {VAL400,
                                     'annotations/lvis_v1_val-large.json'}
    assert {key.split('.')[0] for key in changed} == {
        'val_dataloader', 'test_dataloader', 'val_evaluator',
        'test_evaluator'}
