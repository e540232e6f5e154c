"""tools/analysis_tools/batch_size_study.py on generated Fashion-MNIST-format
data: stage 1 trains each method without a classifier, stage 2 leaves the
stage-1 backbone untouched, and the study resumes and writes its CSV and
plot."""
import csv
import json
import os
import os.path as osp

import pytest
import torch

from fake_data import write_fake_fashion_mnist

pytest.importorskip('mmpretrain')

from tools.analysis_tools import batch_size_study as study  # noqa: E402


def tiny_options(root):
    """Both stages on the fake data: a 24-to-6 LT training set, 40 test
    images, no worker processes."""
    lt = dict(data_root=root, n_max=24, imb_factor=4)
    loader = dict(num_workers=0, persistent_workers=False)
    options = {
        'train_dataloader.dataset.data_root': root,
        'train_dataloader.dataset.n_max': 24,
        'train_dataloader.dataset.imb_factor': 4,
        'train_dataloader.num_workers': 0,
        'train_dataloader.persistent_workers': False,
    }
    probe = {
        'test_dataloader': dict(
            batch_size=20, dataset=dict(data_root=root), **loader),
        'test_evaluator.train_dataset': lt,
        'train_cfg.max_epochs': 1,
        'param_scheduler': [dict(type='ConstantLR', factor=1.0)],
    }
    return options, probe


def study_args(tmp_path, *extra):
    root = write_fake_fashion_mnist(str(tmp_path / 'fmnist'))
    options, probe = tiny_options(root)
    args = study.parse_args([
        '--work-dir', str(tmp_path / 'study'), '--stage1-epochs', '1',
        '--probe-losses', 'ce',
        *extra
    ])
    args.cfg_options = options
    args.probe_options = probe
    return args


def test_set_max_epochs_stretches_the_schedule():
    from mmengine.config import Config
    cfg = Config(dict(
        train_cfg=dict(max_epochs=20, val_interval=21),
        param_scheduler=[
            dict(type='LinearLR', begin=0, end=1),
            dict(type='CosineAnnealingLR', T_max=19, begin=1, end=20)
        ]))
    study.set_max_epochs(cfg, 5)
    assert cfg.train_cfg.max_epochs == 5 and cfg.train_cfg.val_interval == 6
    warmup, cosine = cfg.param_scheduler
    assert (warmup.begin, warmup.end) == (0, 1)
    assert (cosine.begin, cosine.end, cosine.T_max) == (1, 5, 4)
    # one epoch: the warm-up alone (the cosine phase would start after it)
    study.set_max_epochs(cfg, 1)
    assert [s.type for s in cfg.param_scheduler] == ['LinearLR']


def test_bad_batch_size_is_refused():
    with pytest.raises(SystemExit):
        study.parse_args(['--batch-sizes', '1', '16'])


def _state(checkpoint):
    return torch.load(checkpoint, map_location='cpu',
                      weights_only=False)['state_dict']


@pytest.mark.slow
@pytest.mark.parametrize('method', ['supcon', 'bcl', 'proco'])
def test_stage1_trains_without_a_classifier(tmp_path, method):
    args = study_args(tmp_path)
    config = osp.join(study.REPO, study.PRESETS['fashionmnistlt'][0]).format(
        method=method)
    checkpoint, lr, epochs = study.train_stage1(config, method, 8, 0,
                                                str(tmp_path / 'run'), args)
    assert epochs == 1 and osp.isfile(checkpoint)
    assert lr == pytest.approx(0.1 * 8 / 64)  # the linear scaling rule
    full = torch.load(checkpoint, map_location='cpu', weights_only=False)
    state = full['state_dict']
    # MMEngine's auto_scale_lr really trained with the scaled lr
    group = full['optimizer']['param_groups'][0]
    assert group['initial_lr'] == pytest.approx(lr)
    scalars = [osp.join(d, f) for d, _, files in os.walk(tmp_path / 'run')
               for f in files if f == 'scalars.json']
    logged = open(scalars[0]).read()
    assert 'loss_contrast' in logged and 'loss_cls' not in logged
    if method == 'proco':
        counts = state['head.contrast_branch.loss.estimator.current_counts']
        assert counts.sum() > 0  # the estimator saw the stage-1 features
    if method == 'bcl':
        assert 'head.contrast_branch.prototype_mlp.0.weight' in state


@pytest.mark.slow
def test_probe_leaves_the_stage1_backbone_untouched(tmp_path):
    args = study_args(tmp_path)
    config = osp.join(study.REPO, study.PRESETS['fashionmnistlt'][0]).format(
        method='supcon')
    checkpoint, _, _ = study.train_stage1(config, 'supcon', 8, 0,
                                          str(tmp_path / 'run'), args)
    probe_config = osp.join(study.REPO, study.PRESETS['fashionmnistlt'][1])
    metrics = study.train_probe(probe_config, checkpoint, 'la', 0,
                                str(tmp_path / 'run'), 'supcon_b8_s0', args)
    assert set(metrics) == {'top1', 'many', 'medium', 'few'}
    assert 0 <= metrics['top1'] <= 100
    stage1 = _state(checkpoint)
    probe_ckpt = osp.join(tmp_path, 'run', 'probe_la', 'epoch_1.pth')
    probe = _state(probe_ckpt)
    backbone = [k for k in stage1 if k.startswith('backbone.')]
    assert any('running_mean' in k for k in backbone)
    for key in backbone:  # weights and BatchNorm buffers
        assert torch.equal(probe[key], stage1[key]), key
    # the probe's own classifier did train, and is a new LinearClsHead
    assert 'head.fc.weight' in probe and not any(
        k.startswith('head.contrast_branch') for k in probe)
    assert osp.isfile(osp.join(tmp_path, 'run', 'probe_la',
                               'per_class_accuracy.csv'))


@pytest.mark.slow
def test_study_writes_csv_and_plot_and_resumes(tmp_path, monkeypatch,
                                               capsys):
    extra = ['--methods', 'supcon', 'proco', '--batch-sizes', '4', '8']
    args = study_args(tmp_path, *extra)
    monkeypatch.setattr(study, 'parse_args', lambda argv=None: args)
    rows = study.main()
    out = capsys.readouterr().out
    assert out.count('] SupCon') == 2 and out.count('] ProCo') == 2
    work_dir = tmp_path / 'study'
    with open(work_dir / 'results.csv') as f:
        table = list(csv.DictReader(f))
    assert len(table) == len(rows) == 4
    assert {(r['method'], int(r['batch_size'])) for r in table} == {
        (m, b) for m in ('supcon', 'proco') for b in (4, 8)}
    assert tuple(table[0]) == study.CSV_FIELDS
    for row in table:
        assert float(row['stage1_lr']) == pytest.approx(
            0.1 * int(row['batch_size']) / 64)
        assert 0 <= float(row['top1']) <= 100
    png = work_dir / 'batch_size_study.png'
    assert png.stat().st_size > 10_000
    with open(png, 'rb') as f:
        assert f.read(8) == b'\x89PNG\r\n\x1a\n'

    # Re-running redoes nothing: every run has its result.json.
    def no_training(*a, **k):
        raise AssertionError('a finished run was trained again')
    monkeypatch.setattr(study, 'build_runner', no_training)
    again = study.main()
    assert capsys.readouterr().out.count('done before') == 4
    assert json.dumps(again) == json.dumps(rows)  # NaN-safe equality

    # A run whose probe did not finish keeps its stage 1 (not retrained)
    # and redoes only the probe.
    run_dir = work_dir / 'proco_b4_s0'
    os.remove(run_dir / 'result.json')
    checkpoint = run_dir / 'stage1' / 'epoch_1.pth'
    stamp = checkpoint.stat().st_mtime_ns
    monkeypatch.undo()
    monkeypatch.setattr(study, 'parse_args', lambda argv=None: args)
    built = []
    real_build = study.build_runner

    def counting_build(cfg):
        built.append(cfg.work_dir)
        return real_build(cfg)
    monkeypatch.setattr(study, 'build_runner', counting_build)
    third = study.main()
    assert built == [str(run_dir / 'probe_ce')]
    assert checkpoint.stat().st_mtime_ns == stamp
    redone = [r for r in third if (r['method'], r['batch_size']) ==
              ('proco', 4)]
    with open(run_dir / 'result.json') as f:
        assert json.dumps(json.load(f)) == json.dumps(redone)
