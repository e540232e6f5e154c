"""A checkpoint is data: hostile checkpoints run no code in any tool.

Each hostile file would run ``touch MARKER`` if a tool executed or fully
unpickled it (``test_payloads_are_live`` proves it). ``tools/test.py``,
``tools/train.py --resume``, training with ``load_from``, the linear probe's
``init_cfg=dict(type='Pretrained')``, the batch-size study's probe and
``knn_eval.py`` each refuse it, or ignore what is code in it, with a message
naming the file; no marker is ever created.
"""
import os
import os.path as osp
import re
import shlex
import subprocess
import sys

import pytest
import torch

from test_train_resume import REPO, write_tiny_config

pytest.importorskip('mmpretrain')

from mmengine.config import Config  # noqa: E402
from mmengine.hooks import Hook  # noqa: E402
from mmengine.logging import HistoryBuffer  # noqa: E402
from mmengine.registry import HOOKS  # noqa: E402
from mmengine.runner import CheckpointLoader  # noqa: E402

from mmlt.utils.checkpoint import (CheckpointLoadError,  # noqa: E402
                                   weights_only_loader)

KINDS = ('code_in_config', 'pickled_object', 'getattr_import',
         'getattr_on_allowed_class', 'truncated')
REFUSED = {
    'pickled_object': "refused by torch's weights_only loader: it pickles "
    'posix.system',
    'getattr_import': "refused by torch's weights_only loader: it pickles "
    '__import__',
    'getattr_on_allowed_class': 'mmlt refused getattr(',
    'truncated': 'cannot read checkpoint',
}
# The head type a checkpoint records at save time (a plain string).
STORED_HEAD = 'mmlt.StoredHeadName'


class Call:
    """Unpickles as ``func(*args)``; ``func`` may be another ``Call``."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args

    def __call__(self, *args):  # pickle requires a callable ``func``
        raise AssertionError('only called when unpickled')


def system_call(command):
    """``os.system(command)``, pickled as the global ``posix.system``."""
    return Call(os.system, command)


def getattr_import(command):
    """``getattr(__import__('os'), 'system')(command)``."""
    import builtins
    return Call(Call(getattr, Call(builtins.__import__, 'os'), 'system'),
                command)


def getattr_on_allowed_class(command):
    """``os.system(command)`` reached from ``HistoryBuffer``, a class that
    mmlt.compat allows, through ``getattr`` (also allowed, restricted):
    ``HistoryBuffer.__init__.__globals__['__builtins__']['__import__']``."""
    module_globals = Call(getattr, Call(getattr, HistoryBuffer, '__init__'),
                          '__globals__')
    builtins_dict = Call(Call(getattr, module_globals, 'get'), '__builtins__')
    import_ = Call(Call(getattr, builtins_dict, 'get'), '__import__')
    return Call(Call(getattr, Call(import_, 'os'), 'system'), command)


def config_with_code(command):
    """Config text that runs ``command`` when executed."""
    return (f'x = __import__("os").system({command!r})\n'
            "model = dict(type='ImageClassifier', "
            "head=dict(type='mmlt.ContrastiveClsHead'))\n")


def write_hostile_checkpoints(directory, marker_dir, state_dict):
    """One file per kind; each would create ``marker_dir/KIND`` if loaded
    unsafely (the truncated file is a cut legit checkpoint).

    Returns:
        dict[str, str]: Path of each kind's file.
    """
    os.makedirs(directory, exist_ok=True)
    os.makedirs(marker_dir, exist_ok=True)
    paths = {}
    for kind in KINDS:
        command = f'touch {shlex.quote(osp.join(marker_dir, kind))}'
        meta = dict(epoch=1, iter=1)
        checkpoint = dict(meta=meta, state_dict=dict(state_dict))
        if kind == 'code_in_config':
            # the file: plain data, weights that do not fit
            meta.update(cfg=config_with_code(command), mmlt_head=STORED_HEAD)
            checkpoint['state_dict'] = {'head.bogus': torch.zeros(2, 2)}
        elif kind != 'truncated':
            maker = dict(pickled_object=system_call,
                         getattr_import=getattr_import,
                         getattr_on_allowed_class=getattr_on_allowed_class)
            meta['hook_msgs'] = maker[kind](command)
        paths[kind] = osp.join(directory, f'{kind}.pth')
        torch.save(checkpoint, paths[kind])
    with open(paths['truncated'], 'rb') as f:
        data = f.read()
    with open(paths['truncated'], 'wb') as f:
        f.write(data[:len(data) // 2])
    return paths


class TrainingStarted(Exception):
    """Raised by :class:`StopAtTrainStart`: loading is over, training
    would begin."""


@HOOKS.register_module(force=True)
class StopAtTrainStart(Hook):
    """Stop a run where training starts, after its checkpoint is loaded."""
    priority = 'VERY_LOW'

    def before_train(self, runner):
        raise TrainingStarted(runner.work_dir)


STOP_AT_TRAIN_START = '''
train_cfg = dict(max_epochs=1, val_interval=1)
custom_hooks = [dict(type='mmlt.CheckpointCheckHook'),
                dict(type='StopAtTrainStart')]
'''
PROBE = '''
_base_ = [{base!r}]
custom_imports = dict(imports=['mmlt_test_hooks'], allow_failed_imports=False)
lt = dict(data_root={root!r}, n_max=24, imb_factor=4)
train_dataloader = dict(batch_size=8, num_workers=0, persistent_workers=False,
                        dataset=lt)
test_dataloader = dict(batch_size=20, num_workers=0, persistent_workers=False,
                       dataset=dict(data_root={root!r}))
test_evaluator = dict(train_dataset=lt)
''' + STOP_AT_TRAIN_START
KNN = '''
_base_ = [{base!r}]
model = dict(backbone=dict(depth=8))
knn_train_dataloader = dict(
    batch_size=64, dataset=dict(data_root={root!r}, n_max=12, imb_factor=2))
knn_test_dataloader = dict(batch_size=64, dataset=dict(data_root={root!r}))
'''


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    """Tiny configs on fake Fashion-MNIST data, and the hostile files."""
    from mmengine.registry import MODELS, init_default_scope
    root_dir = tmp_path_factory.mktemp('hostile')
    config = write_tiny_config(root_dir, extra=STOP_AT_TRAIN_START)
    data_root = str(root_dir / 'fmnist')
    probe = root_dir / 'probe.py'
    probe.write_text(PROBE.format(
        base=osp.join(REPO, 'configs', 'two_stage',
                      'linear-probe_fashionmnistlt.py'),
        root=data_root))
    knn = root_dir / 'knn.py'
    knn.write_text(KNN.format(
        base=osp.join(REPO, 'configs', 'pcl_fashionmnist.py'),
        root=data_root))
    init_default_scope('mmpretrain')
    model = MODELS.build(Config.fromfile(config).model)
    state_dict = {k: v.clone() for k, v in model.state_dict().items()}
    markers = root_dir / 'markers'
    paths = write_hostile_checkpoints(root_dir / 'ckpt', str(markers),
                                      state_dict)
    return dict(config=config, probe=str(probe), knn=str(knn),
                data_root=data_root, markers=markers, paths=paths,
                state_dict=state_dict)


@pytest.fixture
def no_marker(setup):
    """Asserts, after the test, that no payload ran."""
    yield
    assert not os.listdir(setup['markers']), 'a checkpoint ran code'


def assert_refused(error, path, kind):
    message = str(error)
    assert isinstance(error, CheckpointLoadError), repr(error)
    assert error.filename == path and f'checkpoint {path}' in message
    assert REFUSED[kind] in message, message
    if kind == 'truncated':
        assert 'copy it again' in message
    else:
        assert 'If you trust the file' in message


def run_log(work_dir):
    return '\n'.join(p.read_text() for p in work_dir.rglob('*.log'))


def test_payloads_are_live(setup, tmp_path):
    """Loaded unsafely, each file runs its command: the suite's files are
    real attacks, so the tools' 'no marker' results mean something."""
    markers = tmp_path / 'markers'
    paths = write_hostile_checkpoints(tmp_path / 'ckpt', str(markers),
                                      setup['state_dict'])
    for kind in ('pickled_object', 'getattr_import',
                 'getattr_on_allowed_class'):
        torch.load(paths[kind], weights_only=False)
        assert (markers / kind).exists(), kind
    stored = torch.load(paths['code_in_config'], weights_only=True)
    Config.fromstring(stored['meta']['cfg'], '.py')
    assert (markers / 'code_in_config').exists()
    with pytest.raises(RuntimeError):
        torch.load(paths['truncated'], weights_only=True)


@pytest.mark.parametrize('kind', KINDS)
def test_checkpoint_loader_refuses_or_reads_data_only(setup, kind,
                                                      no_marker):
    path = setup['paths'][kind]
    if kind == 'code_in_config':
        loaded = CheckpointLoader.load_checkpoint(path, map_location='cpu')
        assert loaded['meta']['mmlt_head'] == STORED_HEAD  # text, not run
        return
    with pytest.raises(CheckpointLoadError) as error:
        CheckpointLoader.load_checkpoint(path, map_location='cpu')
    assert_refused(error.value, path, kind)


def test_weights_only_even_when_asked_otherwise(setup, monkeypatch,
                                                no_marker):
    """torch.hub (MMEngine's downloads) passes weights_only=False, and the
    environment may ask torch for full unpickling: both are overridden."""
    monkeypatch.setenv('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', '1')
    path = setup['paths']['pickled_object']

    def unsafe_loader(filename, map_location=None):
        return torch.load(filename, map_location, weights_only=False)

    with pytest.raises(CheckpointLoadError) as error:
        weights_only_loader(unsafe_loader)(path)
    assert_refused(error.value, path, 'pickled_object')
    with pytest.raises(CheckpointLoadError):
        CheckpointLoader.load_checkpoint(path)
    # the environment is as it was
    assert os.environ['TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD'] == '1'
    assert 'TORCH_FORCE_WEIGHTS_ONLY_LOAD' not in os.environ
    # every scheme (http, torchvision://, open-mmlab://, ...) is wrapped
    assert all(
        getattr(loader, '_mmlt_weights_only', False)
        for loader in CheckpointLoader._schemes.values())


@pytest.mark.slow
@pytest.mark.parametrize('kind', KINDS)
def test_tools_test(setup, kind, tmp_path, no_marker):
    from tools.test import main
    path = setup['paths'][kind]
    argv = [setup['config'], path, '--work-dir', str(tmp_path),
            '--cfg-options', f'experiment_name=hostile_test_{kind}']
    if kind != 'code_in_config':
        with pytest.raises(CheckpointLoadError) as error:
            main(argv)
        assert_refused(error.value, path, kind)
        return
    metrics = main(argv)  # tested, with the initial weights
    assert 0 <= metrics['lt/top1'] <= 100
    log = run_log(tmp_path)
    assert f'checkpoint {path} does not fit the model of tiny.py' in log
    assert f'head: checkpoint {STORED_HEAD}, config ' \
        'mmlt.ContrastiveClsHead' in log
    assert 'only in the checkpoint: head.bogus (1 keys)' in log


@pytest.mark.slow
@pytest.mark.parametrize('kind', KINDS)
def test_train_resume(setup, kind, tmp_path, no_marker):
    from tools.train import main
    path = setup['paths'][kind]
    with pytest.raises(RuntimeError) as error:
        main([setup['config'], '--work-dir', str(tmp_path), '--resume',
              path, '--cfg-options', f'experiment_name=hostile_resume_{kind}'])
    if kind != 'code_in_config':
        assert_refused(error.value, path, kind)
        return
    message = str(error.value)  # CheckpointCheckHook, before resuming
    assert f'checkpoint {path} does not fit the model' in message
    assert f'head: checkpoint {STORED_HEAD}' in message


@pytest.mark.slow
def test_resume_ignores_the_config_text_mmengine_would_execute(
        setup, tmp_path, no_marker):
    """Weights that fit, and code in meta['config'] (Runner.resume executes
    it) and meta['cfg']: the run resumes, the texts are never run."""
    from tools.train import main
    command = f'touch {shlex.quote(str(setup["markers"] / "resume"))}'
    path = str(tmp_path / 'fits.pth')
    torch.save(
        dict(
            meta=dict(epoch=1, iter=16, config=config_with_code(command),
                      cfg=config_with_code(command)),
            state_dict=setup['state_dict'],
            message_hub=dict(log_scalars={}, runtime_info={},
                             resumed_keys={})), path)
    with pytest.raises(TrainingStarted):
        main([setup['config'], '--work-dir', str(tmp_path / 'work'),
              '--resume', path, '--cfg-options',
              'experiment_name=hostile_resume_fits'])
    log = run_log(tmp_path / 'work')
    assert f"ignored meta['config'] of checkpoint {path}" in log
    assert 'resumed epoch: 1, iter: 16' in log


@pytest.mark.slow
@pytest.mark.parametrize('kind', KINDS)
def test_train_load_from(setup, kind, tmp_path, no_marker):
    from tools.train import main
    path = setup['paths'][kind]
    argv = [setup['config'], '--work-dir', str(tmp_path), '--cfg-options',
            f'load_from={path}', f'experiment_name=hostile_load_{kind}']
    if kind != 'code_in_config':
        with pytest.raises(CheckpointLoadError) as error:
            main(argv)
        assert_refused(error.value, path, kind)
        return
    with pytest.raises(TrainingStarted):  # loaded with a warning
        main(argv)
    log = run_log(tmp_path)
    assert f'checkpoint {path} does not fit the model' in log
    assert 'keep their initial values' in log


@pytest.mark.slow
@pytest.mark.parametrize('kind', KINDS)
def test_linear_probe_pretrained_init(setup, kind, tmp_path, no_marker):
    """configs/two_stage/linear-probe_*: the backbone's
    init_cfg=dict(type='Pretrained', checkpoint=...)."""
    from tools.train import main
    path = setup['paths'][kind]
    argv = [setup['probe'], '--work-dir', str(tmp_path), '--cfg-options',
            f'model.backbone.init_cfg.checkpoint={path}',
            f'experiment_name=hostile_probe_{kind}']
    if kind != 'code_in_config':
        with pytest.raises(CheckpointLoadError) as error:
            main(argv)
        assert_refused(error.value, path, kind)
        return
    # its weights have no backbone.*: MMEngine's Pretrained init refuses it
    # after logging the file it reads
    with pytest.raises(AssertionError, match='backbone. is not in the '
                       'pretrained model'):
        main(argv)
    assert f'load backbone. in model from: {path}' in run_log(tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize('kind', KINDS)
def test_batch_size_study_probe(setup, kind, tmp_path, no_marker):
    from test_batch_size_study import study_args

    from tools.analysis_tools import batch_size_study as study
    path = setup['paths'][kind]
    probe_config = osp.join(REPO, study.PRESETS['fashionmnistlt'][1])
    args = study_args(tmp_path)
    expected = ValueError if kind == 'code_in_config' else \
        CheckpointLoadError
    with pytest.raises(expected) as error:
        study.train_probe(probe_config, path, 'ce', 0, str(tmp_path / 'run'),
                          f'hostile_{kind}', args)
    if kind == 'code_in_config':  # no backbone.* weights in it
        assert f'stage-1 checkpoint {path} holds no backbone' in str(
            error.value)
    else:
        assert_refused(error.value, path, kind)
    assert not (tmp_path / 'run').exists()  # refused before any run


@pytest.mark.slow
@pytest.mark.parametrize('kind', KINDS)
def test_knn_eval(setup, kind, no_marker):
    from tools.analysis_tools import knn_eval
    path = setup['paths'][kind]
    argv = [setup['knn'], path, '--k', '5']
    if kind != 'code_in_config':
        with pytest.raises(CheckpointLoadError) as error:
            knn_eval.main(argv)
        assert_refused(error.value, path, kind)
        return
    with pytest.warns(UserWarning,
                      match=re.escape(f'checkpoint {path} does not fit')):
        results = knn_eval.main(argv)
    assert 0 <= results['top1'] <= 100


@pytest.mark.slow
def test_command_line_refusal(setup, tmp_path, no_marker):
    """The issue's command line, ``python tools/test.py CONFIG evil.pth``:
    a non-zero exit whose last line names the file."""
    path = setup['paths']['pickled_object']
    env = dict(os.environ, OMP_NUM_THREADS='1',
               PYTHONPATH=osp.join(REPO, 'tests'))
    result = subprocess.run(
        [sys.executable, osp.join(REPO, 'tools', 'test.py'),
         setup['config'], path, '--work-dir', str(tmp_path),
         '--cfg-options', 'custom_hooks=[]'],  # no test-only hooks
        cwd=str(tmp_path), env=env, capture_output=True, text=True,
        timeout=300)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith('mmlt.utils.checkpoint.CheckpointLoadError: '
                           f'checkpoint {path} was refused'), last
