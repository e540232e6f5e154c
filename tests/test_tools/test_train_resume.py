"""tools/train.py on generated Fashion-MNIST-format data: train + val, and a
run that crashes and resumes ends exactly where an uninterrupted run ends."""
import os.path as osp

import pytest
import torch

from fake_data import write_fake_fashion_mnist

pytest.importorskip('mmpretrain')

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))

TINY = '''
_base_ = [{base!r}]
custom_imports = dict(imports=['mmlt_test_hooks'], allow_failed_imports=False)
data_root = {root!r}
lt = dict(n_max=24, imb_factor=4)
train_dataloader = dict(
    batch_size=8, num_workers=1, persistent_workers=False,
    dataset=dict(data_root=data_root, **lt))
val_dataloader = dict(
    batch_size=20, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
val_evaluator = dict(train_dataset=dict(data_root=data_root, **lt))
test_evaluator = val_evaluator
train_cfg = dict(max_epochs=3, val_interval=1)
default_hooks = dict(logger=dict(interval=1),
                     checkpoint=dict(interval=1, max_keep_ckpts=3))
'''


def write_tiny_config(tmp_path, base='proco_fashionmnistlt.py', extra=''):
    root = write_fake_fashion_mnist(str(tmp_path / 'fmnist'))
    path = tmp_path / 'tiny.py'
    path.write_text(
        TINY.format(base=osp.join(REPO, 'configs', base), root=root) + extra)
    return str(path)


def run_train(cfg_path, work_dir, *extra):
    from tools.train import main
    runner = main([
        cfg_path, '--work-dir',
        str(work_dir), '--cfg-options', f'experiment_name={work_dir.name}',
        *extra
    ])
    return runner


def model_state(runner):
    model = getattr(runner.model, 'module', runner.model)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.slow
def test_train_val_and_resume_equal_uninterrupted(tmp_path):
    cfg = write_tiny_config(tmp_path)
    full = run_train(cfg, tmp_path / 'full')
    expected = model_state(full)
    expected_metrics = full.val_loop.run()
    assert set(expected_metrics) >= {'lt/top1', 'lt/many', 'lt/few'}
    # ClassCountsHook pointed the metric's per-class CSV at the work dir
    with open(tmp_path / 'full' / 'per_class_accuracy.csv') as f:
        rows = f.read().strip().splitlines()
    assert rows[0].startswith('class_index') and len(rows) == 11

    # the estimator saw exactly the training views: 2 contrastive views of
    # every training image in the last epoch, and the epoch before
    counts = expected['head.contrast_branch.loss.estimator.current_counts']
    n_train = len(full.train_dataloader.dataset)
    assert counts.sum().item() == 2 * n_train
    assert expected['head.contrast_branch.loss.estimator.previous_counts'].sum(
    ).item() == 2 * n_train
    # the class prior came from the training set's counts (ClassCountsHook)
    class_counts = torch.tensor(
        full.train_dataloader.dataset.class_counts, dtype=torch.float64)
    torch.testing.assert_close(
        expected['head.loss_module.log_prior'],
        (class_counts / class_counts.sum()).log())

    crash = write_tiny_config(
        tmp_path,
        extra="custom_hooks = [dict(type='mmlt.ClassCountsHook'), "
        "dict(type='mmlt.VMFWindowHook'), dict(type='mmlt.ExactResumeHook'), "
        "dict(type='CrashAfterEpoch', epoch=2)]\n")
    with pytest.raises(RuntimeError, match='simulated crash'):
        run_train(crash, tmp_path / 'part')
    assert osp.exists(tmp_path / 'part' / 'epoch_2.pth')
    resumed = run_train(cfg, tmp_path / 'part', '--resume')
    assert resumed.epoch == 3
    # it really resumed: the new run's log starts at epoch 3
    with open(resumed.logger.log_file) as f:
        log = f.read()
    assert 'resumed epoch: 2' in log
    assert 'Epoch(train) [3]' in log and 'Epoch(train) [1]' not in log
    got = model_state(resumed)
    assert set(got) == set(expected)
    for key, value in expected.items():  # bit for bit (ExactResumeHook)
        assert torch.equal(got[key], value), key
    metrics = resumed.val_loop.run()
    for key, value in expected_metrics.items():
        assert metrics[key] == pytest.approx(value, nan_ok=True), key

    # tools/test.py on the final checkpoint gives the same metrics, dumps
    # the predictions and the metrics
    from mmengine.fileio import load

    from tools.test import main as test_main
    preds = tmp_path / 'preds.pkl'
    tested = test_main([
        cfg,
        str(tmp_path / 'full' / 'epoch_3.pth'), '--work-dir',
        str(tmp_path / 'test'), '--out',
        str(preds), '--cfg-options', 'experiment_name=test'
    ])
    for key, value in expected_metrics.items():
        assert tested[key] == pytest.approx(value, nan_ok=True), key
    dumped = load(str(preds))
    assert len(dumped) == 40  # 4 test images of each of the 10 classes
    assert all(d['pred_score'].shape == (10, ) for d in dumped)
    # per-sample copies, not views into each batch's output
    per_sample = osp.getsize(preds) / len(dumped)
    assert per_sample < 600, per_sample  # 0.32 KB on the real test set

    # post-hoc adjustment works after tools/test.py loads the checkpoint:
    # the head's prior comes back from it (nothing else sets it in testing),
    # so log p_tau - log p_0 = -tau log(prior) + a constant per sample.
    adjusted = tmp_path / 'preds_tau.pkl'
    test_main([
        cfg,
        str(tmp_path / 'full' / 'epoch_3.pth'), '--work-dir',
        str(tmp_path / 'test_tau'), '--out',
        str(adjusted), '--cfg-options', 'experiment_name=test_tau',
        'model.head.posthoc_tau=1.0'
    ])
    log_prior = (class_counts / class_counts.sum()).log()
    for plain, tau in zip(dumped, load(str(adjusted))):
        shift = (torch.as_tensor(tau['pred_score']).double().log() -
                 torch.as_tensor(plain['pred_score']).double().log() +
                 log_prior)
        torch.testing.assert_close(
            shift, shift.mean().expand(10), rtol=0, atol=1e-4)
    metrics_file = tmp_path / 'metrics.json'
    test_main([
        cfg,
        str(tmp_path / 'full' / 'epoch_3.pth'), '--work-dir',
        str(tmp_path / 'test2'), '--out',
        str(metrics_file), '--out-item', 'metrics', '--show-dir', 'vis',
        '--interval', '10', '--cfg-options', 'experiment_name=test2'
    ])
    # every 10th test image was painted, under the work dir
    painted = sorted(p.name for p in (tmp_path / 'test2' / 'vis').iterdir())
    assert painted == ['0_0.png', '10_0.png', '20_0.png', '30_0.png']
    assert load(str(metrics_file))['lt/top1'] == pytest.approx(
        expected_metrics['lt/top1'])
