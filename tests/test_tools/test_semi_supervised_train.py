"""Semi-supervised training through tools/train.py on generated
Fashion-MNIST-format data: FixMatch + LA + ProCo trains and validates, the
estimator holds exactly the labeled and the confidently pseudo-labeled
views, and a run killed inside an epoch resumes bit for bit (both samplers'
positions, the estimator, the pseudo-label counts)."""
import os.path as osp
import re

import pytest
import torch

from fake_data import write_fake_fashion_mnist
from test_train_resume import model_state, run_train

pytest.importorskip('mmpretrain')

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
BASE = osp.join(REPO, 'configs', 'semi_supervised',
                'fixmatch-la-proco_fashionmnistlt-consistent.py')

# labeled: int(8 * 0.25 ** (i / 9)) = 8, 6, 5, 5, 4, 3, 3, 2, 2, 2 (40);
# unlabeled: 16 ... 4 of the 22+ images per class left; batches of 4
# labeled + 8 unlabeled: 10 iterations per epoch.
TINY = '''
_base_ = [{base!r}]
custom_imports = dict(imports=['mmlt_test_hooks'], allow_failed_imports=False)
lt = dict(data_root={root!r}, n_max=8, imb_factor=4)
train_dataloader = dict(
    batch_size={batch}, num_workers=1, persistent_workers=False,
    sampler=dict(batch_size=12),
    dataset=dict(
        labeled=dict(**lt),
        unlabeled=dict(**lt, unlabeled=dict(n_max=16, imb_factor=4))))
val_dataloader = dict(
    batch_size=20, num_workers=0, persistent_workers=False,
    dataset=dict(data_root={root!r}))
test_dataloader = val_dataloader
val_evaluator = dict(train_dataset=lt)
test_evaluator = val_evaluator
model = dict(head=dict(threshold=0.25, unlabeled_prior=dict(mode='adaptive')))
train_cfg = dict(max_epochs=2, val_interval=2)
default_hooks = dict(
    logger=dict(interval=1),
    checkpoint=dict(by_epoch=False, interval=7, max_keep_ckpts=4))
'''


def write_config(tmp_path, name='tiny.py', batch=12, extra=''):
    root = write_fake_fashion_mnist(str(tmp_path / 'fmnist'))
    path = tmp_path / name
    path.write_text(
        TINY.format(base=BASE, root=root, batch=batch) + extra)
    return str(path)


@pytest.mark.slow
def test_fixmatch_proco_trains_and_resumes_exactly(tmp_path, capsys):
    cfg = write_config(tmp_path)
    full = run_train(cfg, tmp_path / 'full')
    assert full.iter == 20
    expected = model_state(full)
    metrics = full.val_loop.run()
    assert {'lt/top1', 'lt/many', 'lt/medium', 'lt/few'} <= set(metrics)

    # The prior is the labeled split's (40 images), not the unlabeled one's.
    labeled = torch.tensor([8., 6, 5, 5, 4, 3, 3, 2, 2, 2])
    torch.testing.assert_close(expected['head.loss_module.log_prior'],
                               (labeled / 40).log().double())
    # The last epoch's window: both views of the 40 labeled images and of
    # every pseudo-label kept in that epoch (the head's counts restart at
    # the epoch, like the window).
    kept = expected['head.pseudo_label_counts'][1].sum()
    seen = expected['head.pseudo_label_counts'][0].sum()
    assert seen == 10 * 8  # every unlabeled sample of the epoch counted
    estimator = 'head.contrast_branch.loss.estimator.'
    assert expected[estimator + 'current_counts'].sum() == 2 * (40 + kept)
    assert 0 < kept < seen  # threshold 0.25: some kept, not all
    with open(full.logger.log_file) as f:
        log = f.read()
    # one summary per epoch, numbered like MMEngine's Epoch(train) [e]
    assert re.findall(r'Pseudo-labels of epoch (\d+): kept', log) == ['1', '2']
    assert 'pl_acc_few' in log
    # the estimate of the unlabeled distribution, against the true one, and
    # ACR's tau (set at each epoch's end), logged and plotted per epoch
    taus = re.findall(r'Unlabeled class distribution, estimate vs true: '
                      r'total variation [\d.]+ .* ACR tau ([\d.]+)', log)
    assert len(taus) == 2
    assert expected['head.unlabeled_prior.adaptive_tau'] != 1.0
    for epoch in (1, 2):
        assert osp.getsize(tmp_path / 'full' / 'pseudo_labels' /
                           f'epoch_{epoch}.png') > 1000
    # where ACR's tau would settle for the trained model
    from tools.analysis_tools import acr_tau_map
    capsys.readouterr()
    checkpoint = str(tmp_path / 'full' / 'iter_20.pth')
    acr_tau_map.main([cfg, checkpoint, '--taus', '2', '0', '1'])
    printed = capsys.readouterr().out
    # saved after the last iteration, before the epoch's end sets tau
    saved = float(torch.load(checkpoint, map_location='cpu',
                             weights_only=True)['state_dict']
                  ['head.unlabeled_prior.adaptive_tau'])
    assert f"the checkpoint's tau: {saved:.3f}" in printed
    assert [line.split(' | ')[0] for line in printed.splitlines()
            if line.startswith('| ') and line[2].isdigit()] == [
                '| 0.00', '| 1.00', '| 2.00']
    assert 'tau settles near' in printed
    assert re.search(r"with ACR's estimate .* confident predictions.: total "
                     r'variation [\d.]+, tau [\d.]+', printed)
    assert re.search(r"with the balanced classifier's mean prediction: total "
                     r'variation [\d.]+, tau [\d.]+', printed)

    # Killed at iteration 16 (inside epoch 2); the last checkpoint is
    # iteration 14, 4 batches into epoch 2.
    crash = write_config(
        tmp_path, 'crash.py',
        extra="custom_hooks = [dict(type='mmlt.ClassCountsHook'), "
        "dict(type='mmlt.VMFWindowHook'), "
        "dict(type='mmlt.SemiSupervisedHook'), "
        "dict(type='mmlt.ExactResumeHook'), "
        "dict(type='CrashAfterIter', iteration=16)]\n")
    with pytest.raises(RuntimeError, match='simulated crash'):
        run_train(crash, tmp_path / 'part')
    assert osp.exists(tmp_path / 'part' / 'iter_14.pth')
    resumed = run_train(cfg, tmp_path / 'part', '--resume')
    assert resumed.iter == 20
    with open(resumed.logger.log_file) as f:
        assert 'skipping its first 4 iterations' in f.read()
    # the plot's history came back with the checkpoint
    history = resumed.message_hub.get_info('mmlt_pseudo_label_history')
    assert [row['epoch'] for row in history] == [1, 2]
    got = model_state(resumed)
    assert set(got) == set(expected)
    for key, value in expected.items():
        assert torch.equal(got[key], value), key


def test_batch_size_mismatch_fails_before_training(tmp_path):
    cfg = write_config(tmp_path, batch=10)
    with pytest.raises(ValueError, match='batch_size=10 but its '
                       'MultiSourceSampler has batch_size=12'):
        run_train(cfg, tmp_path / 'bad')
