"""tools/analysis_tools/tau_norm_search.py: tau chosen on the validation
split without reading the test set, scores equal to an independent
computation, and tools/test.py evaluating the written checkpoint."""
import json
import os.path as osp

import numpy as np
import pytest
import torch

from fake_data import write_fake_fashion_mnist

pytest.importorskip('mmpretrain')

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
TAUS = [0.0, 0.5, 1.0, 1.5]

TINY = '''
_base_ = [{base!r}]
data_root = {root!r}
lt = dict(n_max=24, imb_factor=4)
val_dataloader = dict(
    batch_size=7, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, n_val_per_class=5, **lt))
test_dataloader = dict(
    batch_size=20, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root))
val_evaluator = dict(train_dataset=dict(data_root=data_root, **lt))
test_evaluator = val_evaluator
'''


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    """A tiny tau-norm config and a joint CE checkpoint whose classifier
    rows have long-tailed norms (10 for class 0 down to 1 for class 9)."""
    from mmengine.config import Config
    from mmengine.registry import MODELS, DefaultScope
    from mmengine.runner import save_checkpoint
    tmp = tmp_path_factory.mktemp('tau_search')
    root = write_fake_fashion_mnist(str(tmp / 'fmnist'))
    config = tmp / 'taunorm_tiny.py'
    config.write_text(TINY.format(
        base=osp.join(REPO, 'configs', 'decoupled',
                      'taunorm_fashionmnistlt.py'), root=root))
    from mmlt.datasets import FashionMNISTLT
    ce = Config.fromfile(osp.join(REPO, 'configs', 'ce_fashionmnistlt.py'))
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        joint = MODELS.build(ce.model)
    joint.init_weights()
    # a classifier without training: centred class means of the training
    # features, scaled to long-tailed norms (10 for class 0 ... 1 for 9)
    train = FashionMNISTLT(data_root=root, n_max=24, imb_factor=4)
    feats, labels = pooled_features(joint, train)
    means = torch.stack([feats[labels == c].mean(0) for c in range(10)])
    with torch.no_grad():
        joint.head.fc.weight.copy_(
            torch.nn.functional.normalize(means - means.mean(0), dim=1) *
            torch.arange(10, 0, -1.0)[:, None])
    checkpoint = str(tmp / 'ce.pth')
    save_checkpoint(dict(state_dict=joint.state_dict()), checkpoint)
    return dict(config=str(config), checkpoint=checkpoint, root=root,
                joint=joint, tmp=tmp)


def pooled_features(joint, dataset):
    """The joint model's pooled features ``(N, 64)`` and the labels."""
    joint.eval()
    images = [
        torch.as_tensor(dataset.get_data_info(i)['img']).permute(2, 0, 1)
        for i in range(len(dataset))]
    with torch.no_grad():
        inputs = joint.data_preprocessor(
            dict(inputs=images, data_samples=None), False)['inputs']
        feats = joint.extract_feat(inputs)[-1]
    return feats, torch.as_tensor(dataset.get_gt_labels())


def independent_top1(joint, dataset, tau):
    """Top-1 (%) of the tau-normalised joint classifier without its bias,
    computed here from the joint model's pooled features."""
    feats, labels = pooled_features(joint, dataset)
    weight = joint.head.fc.weight.detach()
    rows = weight / weight.norm(dim=1, keepdim=True) ** tau
    predictions = (feats @ rows.t()).argmax(1)
    return 100.0 * (predictions == labels).double().mean().item()


@pytest.mark.slow
def test_search_reads_no_test_image_and_test_uses_the_tau(setup, tmp_path,
                                                          monkeypatch):
    from mmlt.datasets import FashionMNISTLT
    from tools.analysis_tools.tau_norm_search import main as search
    from tools.test import main as test
    read_split = FashionMNISTLT.read_split

    def no_test_set(self, split):
        if split == 'test':
            raise AssertionError('the tau search read the test set')
        return read_split(self, split)

    monkeypatch.setattr(FashionMNISTLT, 'read_split', no_test_set)
    work = tmp_path / 'search'
    best, scores = search([setup['config'], setup['checkpoint'],
                           '--work-dir', str(work), '--taus',
                           *map(str, TAUS)])
    monkeypatch.setattr(FashionMNISTLT, 'read_split', read_split)

    val = FashionMNISTLT(data_root=setup['root'], split='val', n_max=24,
                         imb_factor=4, n_val_per_class=5)
    expected = [independent_top1(setup['joint'], val, tau) for tau in TAUS]
    np.testing.assert_allclose([s['lt/top1'] for s in scores], expected)
    assert len(set(expected)) > 1  # tau changes the predictions
    assert best == min(t for t, v in zip(TAUS, expected)
                       if v == max(expected))
    with open(work / 'tau_norm_search.json') as f:
        record = json.load(f)
    assert record['tau'] == best
    assert record['validation_dataset']['split'] == 'val'
    assert [r['tau'] for r in record['taus']] == TAUS

    # tools/test.py evaluates the written checkpoint with that tau
    metrics = test([setup['config'], str(work / 'tau_norm.pth'),
                    '--work-dir', str(tmp_path / 'test')])
    test_set = FashionMNISTLT(data_root=setup['root'], split='test')
    assert metrics['lt/top1'] == pytest.approx(
        independent_top1(setup['joint'], test_set, best))

    # the seed study tests a post-hoc config's checkpoint of each seed
    import shutil
    from tools.analysis_tools.seed_study import main as study
    (tmp_path / 'seed0').mkdir()
    shutil.copy(work / 'tau_norm.pth', tmp_path / 'seed0')
    study([setup['config'], '--seeds', '0', '--work-dir',
           str(tmp_path / 'study'), '--metrics', 'lt/top1', '--evaluate',
           'test', '--checkpoint',
           str(tmp_path / 'seed{seed}' / 'tau_norm.pth')])
    with open(tmp_path / 'study' / 'taunorm_tiny' / 'seed0' /
              'result_test-last.json') as f:
        assert json.load(f)['lt/top1'] == pytest.approx(metrics['lt/top1'])


def test_search_refuses_configs_that_would_tune_on_the_test_set(setup):
    from tools.analysis_tools.tau_norm_search import main as search
    on_test = setup['tmp'] / 'taunorm_on_test.py'
    on_test.write_text(f'_base_ = [{setup["config"]!r}]\n'
                       "val_dataloader = dict(dataset=dict(split='test'))\n")
    with pytest.raises(ValueError, match='validates on its test set'):
        search([str(on_test), setup['checkpoint']])
    with pytest.raises(ValueError, match='not a tau-norm config'):
        search([osp.join(REPO, 'configs', 'decoupled',
                         'lws_fashionmnistlt.py'), setup['checkpoint']])
    with pytest.raises(ValueError, match='fixes model.head.tau'):
        search([setup['config'], setup['checkpoint'], '--cfg-options',
                'model.head.tau=0.5'])
    with pytest.raises(SystemExit):
        search([setup['config'], setup['checkpoint'], '--taus', '-1'])
