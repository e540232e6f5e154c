"""No silent CPU fallback: on a machine that looks like a GPU node but where
torch sees no GPU, distributed and single-process training stop with a message
naming torch's CUDA version, the driver and the fix; ``MMLT_ALLOW_CPU=1`` or
``backend='gloo'`` opt in, and without any GPU sign nccl still becomes gloo.

The GPU node is faked: environment variables, a fake ``nvidia-smi`` on the
PATH, ``torch.cuda.is_available`` patched to False."""
import os
import shutil
import warnings

import pytest
import torch
import torch.distributed as torch_dist
import torch.nn as nn
from mmengine.dist import utils as dist_utils
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch.utils.data import Dataset

from mmlt import compat
from mmlt.engine.optim_wrappers import (AmpOptimWrapper,
                                        SkipNonFiniteOptimWrapper)

DRIVER = '470.82.01'
SLEEP = shutil.which('sleep')  # before the tests narrow the PATH
QUERY = '--query-gpu=driver_version --format=csv,noheader'


def fake_nvidia_smi(bin_dir, body):
    """Put an executable ``nvidia-smi`` running the shell ``body`` in
    ``bin_dir``."""
    bin_dir.mkdir(exist_ok=True)
    path = bin_dir / 'nvidia-smi'
    path.write_text('#!/bin/sh\n' + body + '\n')
    path.chmod(0o755)


def driver_script(version=DRIVER):
    """Prints ``version`` for the driver query only, fails otherwise."""
    return (f'if [ "$*" = "{QUERY}" ]; then echo {version}; echo {version}; '
            'else echo "unexpected arguments: $*" >&2; exit 3; fi')


@pytest.fixture
def no_gpu(monkeypatch, tmp_path):
    """A machine where torch sees no GPU and nothing suggests one: no GPU
    variables, a PATH without nvidia-smi. Returns the PATH's directory."""
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    for name in list(os.environ):
        if (name in ('CUDA_VISIBLE_DEVICES', compat.ALLOW_CPU_ENV)
                or name.startswith(('SLURM_JOB_GPUS', 'SLURM_STEP_GPUS',
                                    'SLURM_GPUS'))):
            monkeypatch.delenv(name)
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    monkeypatch.setenv('PATH', str(bin_dir))
    return bin_dir


def expected_build():
    if torch.version.cuda is None:
        return 'CPU-only build (torch.version.cuda is None)'
    return f'built for CUDA {torch.version.cuda} (torch.version.cuda)'


def test_gpu_signals_read_each_kind_of_variable(tmp_path):
    empty = str(tmp_path)  # a PATH without nvidia-smi
    cases = {
        # CUDA_VISIBLE_DEVICES: ids, UUIDs and MIG names are devices; '',
        # '-1' (mmengine's "use the CPU") and Slurm's NoDevFiles are not
        ('CUDA_VISIBLE_DEVICES', '0'): True,
        ('CUDA_VISIBLE_DEVICES', 'GPU-8a3f1c2e,GPU-77b0'): True,
        ('CUDA_VISIBLE_DEVICES', 'MIG-4d1e'): True,
        ('CUDA_VISIBLE_DEVICES', ''): False,
        ('CUDA_VISIBLE_DEVICES', '-1'): False,
        ('CUDA_VISIBLE_DEVICES', '-1,0'): False,
        ('CUDA_VISIBLE_DEVICES', 'NoDevFiles'): False,
        # Slurm's device lists and [type:]count requests
        ('SLURM_JOB_GPUS', '0'): True,
        ('SLURM_STEP_GPUS', '2,3'): True,
        ('SLURM_STEP_GPUS', ''): False,
        ('SLURM_GPUS_ON_NODE', '2'): True,
        ('SLURM_GPUS_ON_NODE', '0'): False,
        ('SLURM_GPUS_PER_NODE', 'a100:4'): True,
        ('SLURM_GPUS_PER_NODE', 'a100:0'): False,
        ('SLURM_GPUS_PER_TASK', 'h100'): True,
        ('SLURM_GPUS', '1'): True,
        # not GPU variables
        ('SLURM_NTASKS', '8'): False,
        ('SLURM_CPUS_ON_NODE', '16'): False,
    }
    for (name, value), expected in cases.items():
        signals = compat.gpu_signals({name: value, 'PATH': empty})
        assert signals == ([f'{name}={value}'] if expected else []), name
    assert compat.gpu_signals({'PATH': empty}) == []

    fake_nvidia_smi(tmp_path / 'bin', driver_script())
    assert compat.gpu_signals({'PATH': str(tmp_path / 'bin')}) == [
        'nvidia-smi on the PATH'
    ]


def test_nvidia_driver_reports_version_or_why_none(no_gpu):
    assert compat.nvidia_driver() == 'none found (no nvidia-smi on the PATH)'
    fake_nvidia_smi(no_gpu, driver_script())
    assert compat.nvidia_driver() == DRIVER  # the first GPU's line
    fake_nvidia_smi(
        no_gpu, "echo \"NVIDIA-SMI has failed because it couldn't "
        'communicate with the NVIDIA driver."; exit 9')
    assert compat.nvidia_driver() == (
        "none found (nvidia-smi: NVIDIA-SMI has failed because it couldn't "
        'communicate with the NVIDIA driver.)')
    fake_nvidia_smi(no_gpu, f'exec {SLEEP} 30')
    assert compat.nvidia_driver(timeout=0.5) == (
        'none found (nvidia-smi did not answer)')


def init_pytorch_launcher(monkeypatch, backend, port=29999):
    """``mmengine.dist.init_dist('pytorch', backend)`` as rank 0 of 1."""
    for name, value in dict(RANK='0', LOCAL_RANK='0', WORLD_SIZE='1',
                            MASTER_ADDR='127.0.0.1',
                            MASTER_PORT=str(port)).items():
        monkeypatch.setenv(name, value)
    # init_dist would set this pytest process's start method to spawn
    monkeypatch.setattr(dist_utils.mp, 'set_start_method',
                        lambda *args, **kwargs: None)
    dist_utils.init_dist('pytorch', backend=backend)


GPU_NODES = {
    'CUDA_VISIBLE_DEVICES': ('CUDA_VISIBLE_DEVICES', '0,1'),
    'Slurm': ('SLURM_JOB_GPUS', '0'),
    'nvidia-smi': None,
}


@pytest.mark.parametrize('node', list(GPU_NODES))
def test_nccl_on_a_gpu_node_without_cuda_stops_before_training(
        monkeypatch, no_gpu, node):
    variable = GPU_NODES[node]
    if variable is None:
        fake_nvidia_smi(no_gpu, driver_script())
        signal, driver = 'nvidia-smi on the PATH', DRIVER
    else:
        monkeypatch.setenv(*variable)
        signal = '='.join(variable)
        driver = 'none found (no nvidia-smi on the PATH)'
    with pytest.raises(RuntimeError) as error:
        init_pytorch_launcher(monkeypatch, 'nccl')
    assert not torch_dist.is_initialized()
    message = str(error.value)
    assert ("distributed training with backend='nccl' would run on the CPU"
            in message)
    assert f'this machine looks like a GPU node ({signal})' in message
    assert f'torch {torch.__version__} is {expected_build()}' in message
    assert f'NVIDIA driver: {driver}\n' in message
    # the fixes: the driver or torch, or an explicit opt-in to the CPU
    if torch.version.cuda is not None:
        assert ('upgrade the NVIDIA driver to one that supports CUDA '
                f'{torch.version.cuda}, or install a torch build for the '
                'CUDA version the driver supports') in message
    assert ("set MMLT_ALLOW_CPU=1 or env_cfg=dict(dist_cfg=dict("
            "backend='gloo'))") in message


OPT_INS = {
    # (variables, backend asked for, the warning it gives)
    'MMLT_ALLOW_CPU=1': ({'CUDA_VISIBLE_DEVICES': '0', 'MMLT_ALLOW_CPU': '1'},
                         'nccl', "'nccl' was replaced by 'gloo'"),
    "backend='gloo'": ({'CUDA_VISIBLE_DEVICES': '0'}, 'gloo',
                       "training on the CPU with backend='gloo' as "
                       'configured, although this machine looks like a GPU '
                       'node (CUDA_VISIBLE_DEVICES=0)'),
    # this test machine: nothing suggests GPUs, nccl still becomes gloo
    'no GPU sign': ({}, 'nccl', "'nccl' was replaced by 'gloo'"),
}


@pytest.mark.parametrize('case', list(OPT_INS))
def test_opt_in_or_no_gpu_sign_trains_on_gloo(monkeypatch, no_gpu, port,
                                              case):
    variables, backend, warning = OPT_INS[case]
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    try:
        with pytest.warns(UserWarning, match=warning.replace('(', r'\(')
                          .replace(')', r'\)')):
            init_pytorch_launcher(monkeypatch, backend, port)
        assert torch_dist.is_initialized()
        assert torch_dist.get_backend() == 'gloo'
        assert torch_dist.get_world_size() == 1
    finally:
        if torch_dist.is_initialized():
            torch_dist.destroy_process_group()


def test_find_unused_parameters_of_the_config_reaches_a_custom_wrapper():
    from mmengine.config import Config
    seen = {}

    class FakeRunner:
        cfg = Config(dict(find_unused_parameters=True))

    def wrap_model(self, model_wrapper_cfg, model):
        seen.update(model_wrapper_cfg)
        return model

    wrap = compat._config_find_unused_parameters(wrap_model)
    ddp = 'mmlt.ChannelsLastDistributedDataParallel'
    wrap(FakeRunner(), dict(type=ddp), None)
    assert seen == dict(type=ddp, find_unused_parameters=True)
    # the wrapper's own setting wins; non-DDP wrappers get nothing new
    seen.clear()
    wrap(FakeRunner(), dict(type=ddp, find_unused_parameters=False), None)
    assert seen == dict(type=ddp, find_unused_parameters=False)
    seen.clear()
    wrap(FakeRunner(), dict(type='MMFullyShardedDataParallel'), None)
    assert seen == dict(type='MMFullyShardedDataParallel')
    # installed on mmengine's Runner
    assert Runner.wrap_model._mmlt_cpu_safe


# --------------------------------------------------- single-process runs --
class TinyModel(BaseModel):

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 1)

    def forward(self, inputs, targets=None, mode='tensor'):
        out = self.linear(inputs).squeeze(-1)
        if mode == 'loss':
            return dict(loss=((out - targets)**2).mean())
        return out


class TinyData(Dataset):

    def __len__(self):
        return 8

    def __getitem__(self, i):
        return dict(inputs=torch.full((2, ), float(i)), targets=float(i))


class CountIters(Hook):

    def __init__(self):
        self.iters = 0

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        self.iters += 1


def tiny_runner(tmp_path, wrapper):
    counter = CountIters()
    runner = Runner(
        model=TinyModel(),
        work_dir=str(tmp_path / 'work'),
        experiment_name=tmp_path.name,
        train_dataloader=dict(
            dataset=TinyData(),
            sampler=dict(type='DefaultSampler', shuffle=False),
            batch_size=4,
            collate_fn=dict(type='default_collate')),
        optim_wrapper=dict(
            type=wrapper, optimizer=dict(type='SGD', lr=0.01)),
        train_cfg=dict(by_epoch=True, max_epochs=1),
        custom_hooks=[counter],
        default_hooks=dict(checkpoint=None),
        default_scope='mmengine')
    return runner, counter


@pytest.mark.parametrize('wrapper', [
    'mmlt.AmpOptimWrapper', 'mmlt.SkipNonFiniteOptimWrapper'])
def test_single_process_run_on_a_gpu_node_stops_before_its_first_step(
        monkeypatch, no_gpu, tmp_path, wrapper):
    fake_nvidia_smi(no_gpu, driver_script())
    monkeypatch.setenv('SLURM_GPUS_ON_NODE', '4')
    runner, counter = tiny_runner(tmp_path, wrapper)
    with pytest.raises(RuntimeError) as error:
        runner.train()
    assert counter.iters == 0
    message = str(error.value)
    what = ('--amp (bfloat16 autocast)'
            if wrapper == 'mmlt.AmpOptimWrapper' else 'training')
    assert message.startswith(f'mmlt: {what} would run on the CPU')
    assert ('(SLURM_GPUS_ON_NODE=4; nvidia-smi on the PATH)') in message
    assert f'NVIDIA driver: {DRIVER}\n' in message
    assert f'torch {torch.__version__} is {expected_build()}' in message
    assert message.endswith('To train on the CPU on purpose, set '
                            'MMLT_ALLOW_CPU=1.')


@pytest.mark.parametrize('wrapper', [AmpOptimWrapper,
                                     SkipNonFiniteOptimWrapper])
@pytest.mark.parametrize('allow', [None, '1', 'true', '0'])
def test_single_process_cpu_runs_as_before_without_gpu_signs_or_opted_in(
        monkeypatch, no_gpu, wrapper, allow):
    optimizer = torch.optim.SGD(nn.Linear(2, 1).parameters(), lr=0.1)
    # nothing suggests GPUs: a plain CPU run works as it always did
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        built = wrapper(optimizer=optimizer)
    if wrapper is AmpOptimWrapper:
        assert built.cast_dtype == torch.bfloat16
        assert built.device_type == 'cpu'
    monkeypatch.setenv('CUDA_VISIBLE_DEVICES', '0')
    if allow is not None:
        monkeypatch.setenv('MMLT_ALLOW_CPU', allow)
    if allow in ('1', 'true'):
        assert wrapper(optimizer=optimizer).skipped_steps == 0
    else:
        with pytest.raises(RuntimeError, match='MMLT_ALLOW_CPU=1'):
            wrapper(optimizer=optimizer)
