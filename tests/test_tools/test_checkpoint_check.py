"""A checkpoint of another model: resuming it is an error that names the
checkpoint, the config and what differs, raised before the optimizer state
is touched; testing with it is a warning."""
import shutil

import pytest

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
