"""A checkpoint of another model: resuming it is an error that names the
checkpoint, the config and what differs, raised before the optimizer state
is touched; testing with it is a warning."""
import shutil
from types import SimpleNamespace

import pytest
import torch

from test_train_resume import run_train, write_tiny_config

pytest.importorskip('mmpretrain')

ONE_EPOCH = 'train_cfg = dict(max_epochs=1, val_interval=1)\n'


@pytest.mark.slow
def test_resume_with_another_configs_checkpoint_names_the_difference(
        tmp_path):
    ce = write_tiny_config(tmp_path / 'ce', 'ce_fashionmnistlt.py', ONE_EPOCH)
    run_train(ce, tmp_path / 'ce_work')
    checkpoint = tmp_path / 'ce_work' / 'epoch_1.pth'

    proco = write_tiny_config(tmp_path / 'proco', extra=ONE_EPOCH)
    with pytest.raises(RuntimeError) as error:
        run_train(proco, tmp_path / 'proco_work', '--resume', str(checkpoint))
    message = str(error.value)
    assert str(checkpoint) in message and 'tiny.py' in message
    # the checkpoint's head is the string stored when it was saved
    saved = torch.load(checkpoint, map_location='cpu', weights_only=True)
    assert saved['meta']['mmlt_head'] == 'mmlt.ContrastiveClsHead'
    assert 'head: checkpoint mmlt.ContrastiveClsHead, config ' \
        'mmlt.ContrastiveClsHead' in message
    assert 'missing in the checkpoint: head.contrast_branch' in message
    assert 'Resume with the config that wrote the checkpoint' in message
    # the same config's checkpoint resumes without complaint
    shutil.copy(checkpoint, tmp_path / 'ce_copy.pth')
    resumed = run_train(ce, tmp_path / 'ce_work2', '--resume',
                        str(tmp_path / 'ce_copy.pth'))
    assert resumed.epoch == 1

    # testing with it warns and names the layers left at their init values
    from tools.test import main as test_main
    test_main([
        proco, str(checkpoint), '--work-dir', str(tmp_path / 'test'),
        '--cfg-options', 'experiment_name=check_test'
    ])
    log = next((tmp_path / 'test').rglob('*.log')).read_text()
    assert 'does not fit the model' in log
    assert 'keep their initial values' in log


def test_head_type_reads_parsed_configs_only():
    from mmlt.engine.hooks.checkpoint_check_hook import head_type
    assert head_type(dict(head=dict(type='mmlt.ContrastiveClsHead'))) == \
        'mmlt.ContrastiveClsHead'
    detector = dict(roi_head=dict(bbox_head=dict(type='mmlt.ProCoBBoxHead')))
    assert head_type(detector) == 'mmlt.ProCoBBoxHead'
    assert head_type("model = dict(head=dict(type='X'))") is None
    assert head_type(dict(head=dict(type=int))) is None
    assert head_type(None) is None


def _resuming_runner(tmp_path, head):
    """The runner attributes the hook reads, resuming ``old.pth``."""
    from mmengine.config import Config
    return SimpleNamespace(
        model=torch.nn.Linear(2, 3),
        cfg=Config(dict(model=dict(head=dict(type=head)))),
        _resume=True,
        _load_from=str(tmp_path / 'old.pth'),
        work_dir=str(tmp_path),
        logger=None)


def test_head_is_stored_at_save_time_and_never_parsed(tmp_path):
    from mmlt.engine.hooks import CheckpointCheckHook
    hook = CheckpointCheckHook()
    runner = _resuming_runner(tmp_path, 'mmlt.ContrastiveClsHead')
    checkpoint = dict(meta=dict(epoch=1), state_dict={})
    hook.before_save_checkpoint(runner, checkpoint)
    assert checkpoint['meta'] == dict(epoch=1,
                                      mmlt_head='mmlt.ContrastiveClsHead')

    # an older checkpoint: no stored head, and config text that is code
    marker = tmp_path / 'MARKER'
    old = dict(
        meta=dict(cfg=f"import os; os.system('touch {marker}')\n"
                  "model = dict(head=dict(type='mmlt.Other'))"),
        state_dict={'weight': torch.zeros(3, 2), 'extra': torch.zeros(1)})
    with pytest.raises(RuntimeError) as error:
        hook.after_load_checkpoint(runner, old)
    message = str(error.value)
    assert f'checkpoint {tmp_path / "old.pth"} does not fit' in message
    assert 'head: checkpoint (not recorded), config ' \
        'mmlt.ContrastiveClsHead' in message
    assert 'only in the checkpoint: extra (1 keys)' in message
    assert 'missing in the checkpoint: bias (1 keys)' in message
    assert not marker.exists()

    # a stored head that is not a short printable string is not shown
    old['meta']['mmlt_head'] = 'fake\nhead: checkpoint forged'
    with pytest.raises(RuntimeError) as error:
        hook.after_load_checkpoint(runner, old)
    assert 'forged' not in str(error.value)
