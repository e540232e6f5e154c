"""`tools/slurm_train.sh` exports MASTER_PORT (default 29500, or PORT) to the
tasks it starts, and hands srun the usual job layout."""
import os
import os.path as osp
import stat
import subprocess

import pytest

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SCRIPT = osp.join(REPO, 'tools', 'slurm_train.sh')

FAKE_SRUN = """#!/usr/bin/env bash
echo "MASTER_PORT=${MASTER_PORT-<unset>}"
for arg in "$@"; do echo "ARG=$arg"; done
"""


@pytest.fixture
def fake_srun_path(tmp_path):
    """A PATH whose ``srun`` prints its MASTER_PORT and arguments."""
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    srun = bin_dir / 'srun'
    srun.write_text(FAKE_SRUN)
    srun.chmod(srun.stat().st_mode | stat.S_IXUSR)
    return f'{bin_dir}{os.pathsep}{os.environ["PATH"]}'


def run_slurm_train(path, **env_vars):
    """The fake srun's report: (MASTER_PORT it saw, its arguments)."""
    env = {
        k: v
        for k, v in os.environ.items() if k not in ('PORT', 'MASTER_PORT')
    }
    env.update(PATH=path, **env_vars)
    out = subprocess.run(
        ['bash', SCRIPT, 'gpu', 'job1', 'configs/x.py', 'work/x', '--amp'],
        env=env,
        capture_output=True,
        text=True,
        timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    ports = [
        line.split('=', 1)[1] for line in lines
        if line.startswith('MASTER_PORT=')
    ]
    args = [line[len('ARG='):] for line in lines if line.startswith('ARG=')]
    assert len(ports) == 1, out.stdout
    return ports[0], args


def test_master_port_defaults_to_29500(fake_srun_path):
    port, args = run_slurm_train(fake_srun_path)
    assert port == '29500'
    assert args[:2] == ['-p', 'gpu']
    assert '--launcher=slurm' in args and args[-1] == '--amp'
    assert args[args.index('--launcher=slurm') - 2] == 'configs/x.py'


def test_port_sets_master_port(fake_srun_path):
    port, _ = run_slurm_train(fake_srun_path, PORT='12345')
    assert port == '12345'


def test_port_wins_over_inherited_master_port(fake_srun_path):
    # A MASTER_PORT left in the shell does not override PORT's default.
    port, _ = run_slurm_train(fake_srun_path, MASTER_PORT='40000')
    assert port == '29500'
