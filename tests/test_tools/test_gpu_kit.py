"""The GPU kit (tools/gpu_kit.py, docs/gpu.md): pack it, install it offline on
a machine that has only torch, and run its CPU path.

The stand-in for the bare GPU machine is a python whose only packages are
those the kit expects the machine to have: a plain venv (no system
site-packages) of this environment's base interpreter, plus one ``.pth`` that
adds a directory of links to this environment's torch and torchvision, the
compiled packages the kit names as prerequisites (numpy, opencv, matplotlib,
Pillow, PyYAML) and their own dependencies -- nothing of the OpenMMLab stack,
mmlt or their pure-Python dependencies. ``run.sh`` then builds the kit's venv
from that python with ``MMLT_KIT_ISOLATED=1`` (the base interpreter's own
site-packages, which hold unrelated packages on this machine, stay out), and
installs with ``pip install --no-index``, with the network also cut off
through an unreachable proxy: every other import must come from the kit.
"""
import json
import os
import os.path as osp
import subprocess
import sys
import tarfile
import time
from importlib import metadata

import pytest
from packaging.requirements import Requirement

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
sys.path.insert(0, osp.join(REPO, 'tools'))
import gpu_kit  # noqa: E402

FASHION_MNIST = gpu_kit.FASHION_MNIST_ROOT
TARGET_DISTS = ('torch', 'torchvision', 'numpy', 'opencv-python', 'matplotlib',
                'pillow', 'pyyaml')


def closure(names):
    """Installed distributions of ``names`` and their dependencies."""
    seen, queue = {}, list(names)
    while queue:
        name = gpu_kit.canonical(queue.pop())
        if name in seen:
            continue
        try:
            seen[name] = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        for line in seen[name].requires or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate(
                    {'extra': ''}):
                queue.append(requirement.name)
    return seen


def fake_target(root):
    """A python that has torch and the kit's prerequisites, nothing more."""
    links = osp.join(root, 'site')
    os.makedirs(links)
    for dist in closure(TARGET_DISTS).values():
        site = str(dist.locate_file(''))
        for top in {str(f).split('/')[0] for f in dist.files or []}:
            if top != '..' and not osp.lexists(osp.join(links, top)):
                os.symlink(osp.join(site, top), osp.join(links, top))
    target = osp.join(root, 'target')
    subprocess.run([osp.join(sys.base_prefix, 'bin', 'python3'), '-m', 'venv',
                    '--without-pip', target], check=True)
    python = osp.join(target, 'bin', 'python')
    purelib = subprocess.run(
        [python, '-c', 'import sysconfig; print(sysconfig.get_paths()'
         '["purelib"])'], capture_output=True, text=True,
        check=True).stdout.strip()
    with open(osp.join(purelib, 'target_packages.pth'), 'w') as f:
        f.write(links + '\n')
    return python


@pytest.mark.slow
@pytest.mark.kit
@pytest.mark.skipif(not osp.isfile(osp.join(
    FASHION_MNIST, 'train-images-idx3-ubyte.gz')), reason='no Fashion-MNIST')
def test_kit_packs_installs_offline_and_runs_on_cpu(tmp_path):
    archive = str(tmp_path / 'kit.tar.gz')
    manifest = gpu_kit.pack(archive, ['3.11'], FASHION_MNIST)
    assert osp.getsize(archive) < 64 * 2**20
    assert manifest['archive_mib'] < 64
    with tarfile.open(archive) as kit:
        kit.extractall(tmp_path)
    kit = tmp_path / gpu_kit.KIT_NAME

    python = fake_target(str(tmp_path))
    probe = subprocess.run([python, '-c', 'import torch, numpy, cv2; '
                            'import mmengine'], capture_output=True)
    assert probe.returncode != 0  # torch yes, the OpenMMLab stack no
    env = dict(os.environ, PYTHON=python, MMLT_KIT_ISOLATED='1',
               PIP_NO_INDEX='1',
               HTTP_PROXY='http://127.0.0.1:9', HTTPS_PROXY='http://127.0.0.1:9',
               OMP_NUM_THREADS='1', CUDA_VISIBLE_DEVICES='')
    start = time.perf_counter()
    result = subprocess.run(['bash', str(kit / 'run.sh'), '--device', 'cpu'],
                            env=env, capture_output=True, text=True,
                            timeout=600)
    seconds = time.perf_counter() - start
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]

    results = json.loads((kit / 'results.json').read_text())
    assert results['device'] == 'cpu'
    assert {'python', 'torch', 'mmlt', 'mmengine', 'mmcv-lite',
            'mmpretrain'} <= set(results['environment'])
    steps = {step['name']: step for step in results['steps']}
    expected = {
        'train proco_fashionmnistlt float32': 'ok',
        'train proco_fashionmnistlt float16': 'skipped',
        'train proco_fashionmnistlt bfloat16': 'ok',
        'bench_proco_loss float32': 'ok',
        'bench_proco_loss float16': 'skipped',
        'bench_proco_loss bfloat16': 'ok',
        'bench_proco_loss float32 compiled': 'skipped',  # CUDA only
        'branch cost imagenet-lt float32': 'ok',
        'detection half': 'skipped',
    }
    assert {name: steps[name]['status'] for name in expected} == expected
    train = steps['train proco_fashionmnistlt bfloat16']['figures']
    assert train['iters'] == gpu_kit.SIZES['cpu']['train_iters']
    assert train['iters_per_s'] > 0
    proco = steps['bench_proco_loss float32']['figures']
    assert [row['config'] for row in proco] == [[8, 64, 32], [8, 128, 32]]
    branch = steps['branch cost imagenet-lt float32']['figures']
    assert set(branch['ratio_to_ce']) == {'proco', 'bcl'}
    # the stack comes from the kit's venv, torch from the stand-in's links
    where = subprocess.run(
        [str(kit / 'venv' / 'bin' / 'python'), '-c', 'import torch, mmcv, '
         'mmengine, mmpretrain, mmdet, mmlt; print(torch.__file__); '
         'print(mmcv.__file__, mmengine.__file__, mmpretrain.__file__, '
         'mmdet.__file__, mmlt.__file__)'],
        capture_output=True, text=True, check=True,
        cwd=str(tmp_path)).stdout.splitlines()  # not this checkout's mmlt/
    assert where[0].startswith(str(tmp_path / 'site'))
    assert all(path.startswith(str(kit / 'venv')) for path in where[1].split())
    print(f'CPU path: {seconds:.0f} s (run.sh, install included)')


def test_a_kit_over_the_limit_is_removed_with_the_fix(tmp_path):
    archive = tmp_path / 'kit.tar.gz'
    archive.write_bytes(b'\0' * (2 * 2**20))
    assert gpu_kit.check_size(str(archive), 3) == pytest.approx(2)
    with pytest.raises(gpu_kit.KitError, match='over the 1 MiB limit.*'
                       '--python-versions'):
        gpu_kit.check_size(str(archive), 1)
    assert not archive.exists()


def test_missing_compiled_packages_name_the_pip_install(monkeypatch):
    monkeypatch.setitem(gpu_kit.BINARY_PREREQUISITES, 'cls', {
        'json': 'not-needed', 'no_such_module_mmlt': 'no-such-dist'})
    assert gpu_kit.missing_prerequisites(['cls']) == ['no-such-dist']
    args = gpu_kit.parse_args(['run', '--device', 'cpu'])
    with pytest.raises(gpu_kit.KitError, match='pip install no-such-dist'):
        gpu_kit.run(args)


def fake_kit(root, versions):
    (root / 'wheels').mkdir(parents=True)
    for version in versions:
        (root / 'wheels' / f'py{version}.txt').write_text('')
    run_sh = root / 'run.sh'
    run_sh.write_text(open(osp.join(REPO, 'tools', 'gpu_kit_run.sh')).read())
    return run_sh


def test_run_sh_refuses_a_python_the_kit_does_not_cover(tmp_path):
    run_sh = fake_kit(tmp_path, ['3.10', '3.12'])
    result = subprocess.run(['bash', str(run_sh)], capture_output=True,
                            text=True, env=dict(os.environ,
                                                PYTHON=sys.executable))
    assert result.returncode == 2
    assert 'Python 3.11 is not covered' in result.stderr
    assert '--python-versions 3.11' in result.stderr


def test_run_sh_without_torch_says_so(tmp_path):
    target = tmp_path / 'bare'
    subprocess.run([sys.executable, '-m', 'venv', '--without-pip',
                    str(target)], check=True)
    run_sh = fake_kit(tmp_path / 'kit', ['3.11'])
    result = subprocess.run(
        ['bash', str(run_sh)], capture_output=True, text=True,
        env=dict(os.environ, PYTHON=str(target / 'bin' / 'python')))
    assert result.returncode == 2
    assert 'no torch in' in result.stderr and 'torch >= 2.6' in result.stderr
