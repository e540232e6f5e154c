"""A self-contained kit that measures mmlt on any CUDA machine without network.

On a machine with network (this repository's environment, ``tools/setup_env.sh``)::

    python tools/gpu_kit.py pack /tmp/mmlt-gpu-kit.tar.gz   # about 1-2 min

copies the result (under 64 MiB) to the GPU machine, and there::

    tar -xzf mmlt-gpu-kit.tar.gz && bash mmlt-gpu-kit/run.sh   # < 8 min on a GPU

``run.sh`` installs the kit offline into ``mmlt-gpu-kit/venv`` (a venv that sees
the machine's own torch) and calls ``python tools/gpu_kit.py run``, which
writes every figure to ``results.json`` and prints a table. See docs/gpu.md.

What the kit holds (``pack``):

* wheels of mmengine, MMPretrain, MMDetection, the LVIS API and every
  pure-Python package they need, for each of ``--python-versions`` (default
  3.10, 3.11 and 3.12), in the versions of this environment where they
  support that Python;
* mmcv built without compiled ops (``MMCV_WITH_OPS=0``, pure Python, named
  ``mmcv-lite`` by mmcv's own setup.py; enough for classification) and mmcv's
  sdist, for building its ops on the GPU machine (``run.sh --det``);
* mmlt as a wheel, and its ``configs/``, ``tools/`` and ``benchmarks/``;
* the Fashion-MNIST IDX files (about 30 MB of the budget).

Not in the kit: torch and torchvision (the machine has them) and the packages
with compiled code that the stack imports: numpy, opencv-python (or -headless),
matplotlib, Pillow and PyYAML (plus SciPy, Shapely and pycocotools for
detection). Their wheels differ per Python version and opencv's alone is about
60 MB, so they cannot fit the 64 MiB; ``run.sh`` checks them first and names
the ``pip install`` that is missing. Images with torch usually have most.
"""
import argparse
import json
import os
import os.path as osp
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from email.parser import Parser

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..'))
KIT_NAME = 'mmlt-gpu-kit'
MAX_MIB = 64
PYTHON_VERSIONS = ('3.10', '3.11', '3.12')
FASHION_MNIST_ROOT = '/usr/share/datasets/fashion-mnist'
FASHION_MNIST_FILES = ('train-images-idx3-ubyte.gz',
                       'train-labels-idx1-ubyte.gz',
                       't10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz')
#: What mmlt's classification and detection need, besides mmcv and mmlt.
TOP_LEVEL = ('mmengine', 'mmpretrain', 'mmdet', 'lvis', 'pycocotools',
             'setuptools<81')  # setuptools: pkg_resources for mmpretrain::
#: Distributions the GPU machine brings with torch: never packed.
TARGET_HAS = ('torch', 'torchvision', 'triton', 'sympy', 'mpmath', 'networkx',
              'jinja2', 'markupsafe', 'filelock', 'fsspec', 'typing-extensions',
              'pip')
#: Compiled packages the stack imports, by import name: run.sh checks them.
BINARY_PREREQUISITES = {
    'cls': {'numpy': 'numpy', 'cv2': 'opencv-python-headless',
            'matplotlib': 'matplotlib', 'PIL': 'pillow', 'yaml': 'pyyaml'},
    'det': {'scipy': 'scipy', 'shapely': 'shapely',
            'pycocotools': 'pycocotools'},
}
SOURCE_DIRS = ('configs', 'tools', 'benchmarks')


def say(message: str) -> None:
    print(f'[gpu_kit] {message}', flush=True)


class KitError(RuntimeError):
    """A failure whose message names the fix."""


# ------------------------------------------------------------------ pack --
def canonical(name: str) -> str:
    return name.lower().replace('_', '-').replace('.', '-')


def pip(*args: str, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, '-m', 'pip', '--disable-pip-version-check', *args],
        capture_output=True, text=True, env=env)


def installed_version(name: str):
    """This environment's version of ``name`` and whether it is pure Python
    (its wheel tag ends in ``none-any``); ``(None, None)`` if not installed."""
    from importlib import metadata
    try:
        dist = metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return None, None
    tags = [line.split(':', 1)[1].strip()
            for line in (dist.read_text('WHEEL') or '').splitlines()
            if line.startswith('Tag:')]
    return dist.version, bool(tags) and all(
        tag.endswith('-none-any') for tag in tags)


def wheel_metadata(path: str):
    """(name, version, Requires-Python, [Requires-Dist]) of a wheel file."""
    with zipfile.ZipFile(path) as wheel:
        meta_name = next(n for n in wheel.namelist()
                         if n.endswith('.dist-info/METADATA'))
        meta = Parser().parsestr(wheel.read(meta_name).decode('utf-8'))
    return (meta['Name'], meta['Version'], meta.get('Requires-Python'),
            meta.get_all('Requires-Dist') or [])


def fetch_wheel(requirement, python_version: str, wheel_dir: str):
    """A pure-Python wheel for ``requirement`` that installs on
    ``python_version``: this environment's version if it allows it, else the
    newest that does; built from the sdist where PyPI has no wheel. Returns
    the wheel's path, or None when the only wheels are compiled ones."""
    from packaging.specifiers import SpecifierSet
    version, pure = installed_version(requirement.name)
    candidates = [f'{requirement.name}=={version}'] if (
        version and version in requirement.specifier) else []
    candidates.append(f'{requirement.name}{requirement.specifier}')
    for spec in candidates:
        done = packed_already(wheel_dir, spec, python_version)
        if done:
            return done
        with tempfile.TemporaryDirectory() as tmp:
            result = pip('download', '-q', '--no-deps', '--only-binary=:all:',
                          '--python-version', python_version, '-d', tmp, spec)
            if result.returncode != 0 and pure is not False:
                result = pip('wheel', '-q', '--no-deps', '-w', tmp, spec)
            files = [f for f in os.listdir(tmp) if f.endswith('.whl')]
            if result.returncode != 0 or not files:
                continue
            if not files[0].endswith('-none-any.whl'):
                return None
            requires_python = wheel_metadata(osp.join(tmp, files[0]))[2]
            if requires_python and python_version + '.0' not in SpecifierSet(
                    requires_python):
                continue
            os.makedirs(wheel_dir, exist_ok=True)
            target = osp.join(wheel_dir, files[0])
            shutil.move(osp.join(tmp, files[0]), target)
            return target
    raise KitError(
        f'no wheel of {requirement} for Python {python_version} (pip said: '
        f'{result.stderr.strip()[-300:]}); check the network, or leave '
        f'{python_version} out with --python-versions')


def packed_already(wheel_dir: str, spec: str, python_version: str):
    """The wheel of ``name==version`` ``spec`` packed for another Python
    version, if it installs on this one too."""
    from packaging.specifiers import SpecifierSet
    if '==' not in spec or not osp.isdir(wheel_dir):
        return None
    name, version = spec.split('==')
    for file in os.listdir(wheel_dir):
        parts = file.split('-')
        if canonical(parts[0]) == canonical(name) and parts[1] == version:
            requires = wheel_metadata(osp.join(wheel_dir, file))[2]
            if not requires or python_version + '.0' in SpecifierSet(
                    requires):
                return osp.join(wheel_dir, file)
    return None


def marker_environment(python_version: str) -> dict:
    from packaging.markers import default_environment
    env = default_environment()
    env.update(python_version=python_version,
               python_full_version=python_version + '.0', extra='')
    return env


def resolve_pure(python_version: str, wheel_dir: str, roots=TOP_LEVEL):
    """Walk the requirements from ``roots`` for one Python version; download
    the pure-Python wheels. Returns (wheel files, compiled distributions the
    target must have, as ``{name: requirement}``)."""
    from packaging.requirements import Requirement
    env = marker_environment(python_version)
    queue = [Requirement(r) for r in roots]
    seen, wheels, binary = set(), [], {}
    while queue:
        requirement = queue.pop(0)
        name = canonical(requirement.name)
        if name in seen or name in TARGET_HAS or name.startswith('nvidia-'):
            continue
        seen.add(name)
        if name in ('mmcv', 'mmcv-lite', 'mmlt'):
            continue  # packed separately
        version, pure = installed_version(requirement.name)
        wheel = None if pure is False else fetch_wheel(
            requirement, python_version, wheel_dir)
        if wheel is None:
            binary[name] = str(requirement)
            continue
        wheels.append(osp.basename(wheel))
        for line in wheel_metadata(wheel)[3]:
            dependency = Requirement(line)
            if dependency.marker is None or dependency.marker.evaluate(env):
                queue.append(dependency)
    return sorted(wheels), binary


def build_mmcv_lite(wheel_dir: str, sdist_dir: str) -> str:
    """mmcv's pinned version without compiled ops (a few seconds), and its
    sdist for building the ops on the GPU machine."""
    from importlib import metadata
    version = metadata.version('mmcv')
    os.makedirs(sdist_dir, exist_ok=True)
    result = pip('download', '-q', '--no-deps', '--no-binary', ':all:',
                 f'mmcv=={version}', '-d', sdist_dir)
    if result.returncode != 0:
        raise KitError(f'cannot download the sdist of mmcv {version}: '
                       f'{result.stderr.strip()[-300:]}')
    sdist = osp.join(sdist_dir, f'mmcv-{version}.tar.gz')
    env = dict(os.environ, MMCV_WITH_OPS='0')
    result = pip('wheel', '-q', '--no-deps', '--no-build-isolation', '-w',
                 wheel_dir, sdist, env=env)
    if result.returncode != 0:
        raise KitError('building mmcv without ops failed (it needs setuptools '
                       '< 81 in this environment: bash tools/setup_env.sh): '
                       + result.stderr.strip()[-500:])
    return next(f for f in os.listdir(wheel_dir)
                if f.startswith('mmcv_lite-') and f.endswith('.whl'))


def build_mmlt(wheel_dir: str) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        # a copy of the tracked files: the checkout stays clean
        for path in tracked_files(('mmlt', 'setup.py', 'README.md')):
            os.makedirs(osp.join(tmp, osp.dirname(path)), exist_ok=True)
            shutil.copy2(osp.join(REPO, path), osp.join(tmp, path))
        result = pip('wheel', '-q', '--no-deps', '--no-build-isolation', '-w',
                     wheel_dir, tmp)
    if result.returncode != 0:
        raise KitError('building the mmlt wheel failed: '
                       + result.stderr.strip()[-500:])
    return next(f for f in os.listdir(wheel_dir)
                if f.startswith('mmlt-') and f.endswith('.whl'))


def tracked_files(paths) -> list:
    """Files git tracks under ``paths`` (plus untracked, not ignored ones),
    as they are in the working tree."""
    result = subprocess.run(
        ['git', 'ls-files', '--cached', '--others', '--exclude-standard',
         '--', *paths], cwd=REPO, capture_output=True, text=True, check=True)
    return [p for p in result.stdout.splitlines()
            if osp.isfile(osp.join(REPO, p))]


def copy_sources_and_data(kit: str, fashion_mnist_root: str) -> None:
    for path in tracked_files(SOURCE_DIRS):
        target = osp.join(kit, 'src', path)
        os.makedirs(osp.dirname(target), exist_ok=True)
        shutil.copy2(osp.join(REPO, path), target)
    shutil.copy2(osp.join(REPO, 'tools', 'gpu_kit_run.sh'),
                 osp.join(kit, 'run.sh'))
    data = osp.join(kit, 'data', 'fashion-mnist')
    os.makedirs(data)
    for name in FASHION_MNIST_FILES:
        source = osp.join(fashion_mnist_root, name)
        if not osp.isfile(source):
            raise KitError(f'{source} is missing: install Debian\'s '
                           'dataset-fashion-mnist, or pass '
                           '--fashion-mnist-root DIR')
        shutil.copy2(source, data)


def tree_mib(root: str) -> float:
    return sum(osp.getsize(osp.join(d, f)) for d, _, files in os.walk(root)
               for f in files) / 2**20


def pack(out: str, python_versions, fashion_mnist_root: str,
         max_mib: float = MAX_MIB) -> dict:
    """Build the kit into the archive ``out``; returns its manifest.

    Raises:
        KitError: a part cannot be built, or the archive exceeds ``max_mib``.
    """
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix='mmlt_kit_') as tmp:
        kit = osp.join(tmp, KIT_NAME)
        wheels = osp.join(kit, 'wheels')
        os.makedirs(wheels)
        say('building mmcv without compiled ops and the mmlt wheel')
        own = [build_mmcv_lite(wheels, osp.join(kit, 'sdist')),
               build_mmlt(wheels)]
        manifest = dict(python_versions={}, binary_prerequisites=
                        BINARY_PREREQUISITES, target_has=list(TARGET_HAS))
        for version in python_versions:
            say(f'resolving the pure-Python wheels for Python {version}')
            files, binary = resolve_pure(version, wheels, TOP_LEVEL + tuple(
                line for wheel in own
                for line in wheel_metadata(osp.join(wheels, wheel))[3]))
            manifest['python_versions'][version] = dict(
                wheels=own + files, not_packed_compiled=binary)
            with open(osp.join(wheels, f'py{version}.txt'), 'w') as f:
                f.write('\n'.join(own + files) + '\n')  # run.sh installs
        copy_sources_and_data(kit, fashion_mnist_root)
        with open(osp.join(kit, 'manifest.json'), 'w') as f:
            json.dump(manifest, f, indent=1)
        unpacked = tree_mib(kit)
        os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
        with tarfile.open(out, 'w:gz') as archive:
            archive.add(kit, arcname=KIT_NAME)
    size = check_size(out, max_mib)
    manifest.update(archive_mib=round(size, 2), unpacked_mib=round(
        unpacked, 2), pack_seconds=round(time.perf_counter() - start, 1))
    say(f'{out}: {size:.1f} MiB ({unpacked:.1f} MiB unpacked), '
        f'{manifest["pack_seconds"]:.0f} s')
    return manifest


def check_size(archive: str, max_mib: float) -> float:
    """The archive's size in MiB; over ``max_mib`` it is removed and
    :class:`KitError` says what to do."""
    size = osp.getsize(archive) / 2**20
    if size > max_mib:
        os.remove(archive)
        raise KitError(
            f'the kit is {size:.1f} MiB, over the {max_mib:g} MiB limit '
            f'(removed {archive}): pack fewer Python versions '
            '(--python-versions 3.11), or find what grew in its manifest.json')
    return size


# ------------------------------------------------------------------- run --
#: Sizes of each measurement: on a GPU (under 8 minutes in all on one GPU),
#: and the CPU path's tiny ones (this tool's own check, minutes on 2 cores).
SIZES = {
    'cuda': dict(train_iters=300, train_warmup=20, train_workers=6,
                 proco_configs=['32,1000,1024', '32,8142,1024'],
                 proco_args=['--quick', '--no-literal'],
                 branch_args=['--batch', '32', '--size', '224', '--reps', '5',
                              '--warmup', '2', '--threads', '4']),
    'cpu': dict(train_iters=6, train_warmup=2, train_workers=1,
                proco_configs=['8,64,32', '8,128,32'],
                proco_args=['--repeats', '1', '--no-literal'],
                branch_args=['--batch', '1', '--size', '32', '--reps', '1',
                              '--warmup', '1']),
}
AMP_MODES = ('float32', 'float16', 'bfloat16')


def environment_record() -> dict:
    import platform

    import torch
    record = dict(python=platform.python_version(), torch=torch.__version__,
                  torch_cuda=torch.version.cuda,
                  cuda_available=torch.cuda.is_available())
    if record['cuda_available']:
        record.update(
            gpu=torch.cuda.get_device_name(),
            capability='{}.{}'.format(*torch.cuda.get_device_capability()),
            gpu_memory_gib=round(
                torch.cuda.get_device_properties(0).total_memory / 2**30, 1),
            bf16_supported=torch.cuda.is_bf16_supported())
    from importlib import metadata
    for name in ('mmlt', 'mmengine', 'mmcv-lite', 'mmcv', 'mmpretrain',
                 'mmdet', 'numpy'):
        try:
            record[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return record


def missing_prerequisites(groups) -> list:
    """The compiled packages of ``groups`` ('cls', 'det') that do not
    import, as the names to ``pip install``."""
    import importlib
    missing = []
    for group in groups:
        for module, dist in BINARY_PREREQUISITES[group].items():
            try:
                importlib.import_module(module)
            except ImportError:
                missing.append(dist)
    return missing


def run_step(name: str, command, deadline: float, cwd: str,
             json_out: str = None) -> dict:
    """Run one measurement in a subprocess (a crash or hang costs only that
    step), at most until ``deadline``; its JSON output if it wrote one."""
    start = time.perf_counter()
    record = dict(name=name, command=' '.join(command))
    left = deadline - time.time()
    if left < 5:
        return dict(record, status='skipped',
                    reason='out of time (--budget-s)')
    say(f'{name}: {record["command"]}')
    try:
        result = subprocess.run(command, cwd=cwd, capture_output=True,
                                text=True, timeout=left)
    except subprocess.TimeoutExpired:
        return dict(record, status='failed', seconds=round(left, 1),
                    error='timed out', fix='raise --budget-s')
    record['seconds'] = round(time.perf_counter() - start, 1)
    record['output_tail'] = (result.stdout + result.stderr)[-3000:]
    if result.returncode != 0:
        sys.stderr.write(record['output_tail'] + '\n')
        return dict(record, status='failed', error=f'exit code '
                    f'{result.returncode}', fix=guess_fix(record[
                        'output_tail']))
    if json_out:
        with open(json_out) as f:
            record['figures'] = json.load(f)
    return dict(record, status='ok')


def guess_fix(output: str) -> str:
    sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__))))
    try:
        from check_gpu import failure_hint
        return failure_hint(output)
    finally:
        sys.path.pop(0)


def skipped(name: str, reason: str) -> dict:
    return dict(name=name, status='skipped', reason=reason)


def per_dtype(name: str, modes, device: str, command, deadline, cwd: str,
              tmp: str) -> list:
    """One step per dtype of ``modes``: ``command(mode, json_out)`` gives its
    command line; float16 is skipped on a CPU (MMEngine's float16 AMP, with
    its GradScaler, is CUDA only; this kit measures float16 there)."""
    records = []
    for mode in modes:
        label = f'{name} {mode}'
        if mode == 'float16' and device == 'cpu':
            records.append(skipped(label, 'float16 is measured on CUDA only'))
            continue
        out = osp.join(tmp, label.replace(' ', '_') + '.json')
        records.append(run_step(label, command(mode, out), deadline, cwd,
                                out))
    return records


def training_steps(kit_src: str, data: str, device: str, sizes, deadline,
                   tmp: str) -> list:
    """The demo config (proco_fashionmnistlt) without AMP and under each
    AMP dtype, through check_gpu.py's timed short runs."""
    def command(mode, out):
        return [sys.executable, osp.join(kit_src, 'tools', 'gpu_kit.py'),
                'train-worker', '--amp', mode, '--data', data, '--iters',
                str(sizes['train_iters']), '--warmup',
                str(sizes['train_warmup']), '--workers',
                str(sizes['train_workers']), '--out', out]
    return per_dtype('train proco_fashionmnistlt', AMP_MODES, device,
                     command, deadline, kit_src, tmp)


def benchmark_steps(kit_src: str, device: str, sizes, deadline,
                    tmp: str) -> list:
    """bench_proco_loss.py in each dtype (and, on CUDA, float32 with
    ``--compile``), and bench_cls_branch.py (the ImageNet-LT ProCo and BCL
    models against the same model with CE only)."""
    def proco(mode, out):
        return [sys.executable, 'benchmarks/bench_proco_loss.py', '--device',
                device, '--json', out, *sizes['proco_args'], '--configs',
                *sizes['proco_configs']] + amp_flag(mode)

    def branch(mode, out):
        return [sys.executable, 'benchmarks/bench_cls_branch.py', '--device',
                device, '--json', out, *sizes['branch_args']] + amp_flag(mode)
    label = 'bench_proco_loss float32 compiled'
    if device == 'cuda':  # torch.compile's fused logits (triton)
        out = osp.join(tmp, label.replace(' ', '_') + '.json')
        compiled = run_step(label, proco('float32', out) + ['--compile'],
                            deadline, kit_src, out)
    else:
        compiled = skipped(label, 'measured on CUDA only (on a CPU: '
                           'benchmarks/bench_proco_loss.py --compile)')
    return per_dtype('bench_proco_loss', AMP_MODES, device, proco, deadline,
                     kit_src, tmp) + [compiled] + per_dtype(
                         'branch cost imagenet-lt', ('float32', 'bfloat16')
                         if device == 'cuda' else ('float32', ), device,
                         branch, deadline, kit_src, tmp)


def amp_flag(mode: str) -> list:
    return [] if mode == 'float32' else ['--amp-dtype', mode]


def build_mmcv_ops(kit: str, tmp: str, deadline: float) -> dict:
    """mmcv with CUDA ops from the kit's sdist, for the visible GPU's
    architecture only, installed in place of mmcv-lite."""
    import torch
    name = 'build mmcv ops'
    nvcc = shutil.which('nvcc') or (os.environ.get('CUDA_HOME') and osp.join(
        os.environ['CUDA_HOME'], 'bin', 'nvcc'))
    if not nvcc or not osp.exists(nvcc):
        return dict(name=name, status='failed', error='no nvcc',
                    fix=f'install a CUDA {torch.version.cuda} toolkit and set '
                    'CUDA_HOME (or put its nvcc on PATH)')
    sdist = next(osp.join(kit, 'sdist', f) for f in os.listdir(
        osp.join(kit, 'sdist')) if f.startswith('mmcv-'))
    with tarfile.open(sdist) as archive:
        archive.extractall(tmp)
    source = osp.join(tmp, osp.basename(sdist)[:-len('.tar.gz')])
    setup_py = osp.join(source, 'setup.py')
    with open(setup_py) as f:  # torch >= 2.4 headers need C++20
        text = f.read().replace('-std=c++17', '-std=c++20')
    with open(setup_py, 'w') as f:
        f.write(text)
    os.environ.update(
        MMCV_WITH_OPS='1', FORCE_CUDA='1', MAX_JOBS=str(os.cpu_count()),
        TORCH_CUDA_ARCH_LIST='{}.{}'.format(
            *torch.cuda.get_device_capability()))
    wheels = osp.join(tmp, 'mmcv-wheel')
    record = run_step(name, [sys.executable, '-m', 'pip', 'wheel', '-q',
                             '--no-deps', '--no-build-isolation', '-w',
                             wheels, source], deadline, source)
    if record['status'] == 'ok':
        subprocess.run([sys.executable, '-m', 'pip', 'uninstall', '-y', '-q',
                        'mmcv-lite'], check=False)
        subprocess.run([sys.executable, '-m', 'pip', 'install', '-q',
                        '--no-index', '--no-deps', osp.join(
                            wheels, os.listdir(wheels)[0])], check=True)
    return record


def det_steps(kit: str, kit_src: str, data: str, device: str, deadline,
              tmp: str) -> list:
    """``--det``: mmcv's ops built here, then all of check_gpu.py (the ops
    on CUDA against the CPU, the toy LVIS ProCo config with and without AMP)."""
    if device != 'cuda':
        return [skipped('detection half', 'needs a GPU and a CUDA compiler')]
    build = build_mmcv_ops(kit, tmp, deadline)
    if build['status'] != 'ok':
        return [build]
    command = [sys.executable, 'tools/check_gpu.py', '--fashion-mnist-root',
               data, '--iters', '30']
    return [build, run_step('check_gpu.py (both halves)', command, deadline,
                            kit_src)]


def train_worker(args) -> None:
    """One timed short run of the demo config (a subprocess of ``run``)."""
    sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
    from check_gpu import CLS_CONFIG, train_iterations
    import mmlt  # noqa: F401  (registers mmlt)
    amp = False if args.amp == 'float32' else args.amp
    options = {'train_dataloader.num_workers': args.workers,
               'train_dataloader.persistent_workers': True}
    record = train_iterations(CLS_CONFIG, args.data, amp, args.iters,
                              args.warmup, options)
    with open(args.out, 'w') as f:
        json.dump(record, f)


def summary(record: dict) -> str:
    """One line of figures for the table."""
    if record['status'] != 'ok':
        return record.get('reason') or (
            f"{record.get('error')}; fix: {record.get('fix')}")
    figures = record.get('figures')
    if figures is None:
        return ''
    if 'iters_per_s' in figures:
        peak = figures['peak_mib']
        return (f"{figures['iters_per_s'] or 0:.2f} it/s, peak "
                f"{'n/a' if peak is None else f'{peak:.0f} MiB'}, last loss "
                f"{figures['loss']:.3f}")
    if 'ratio_to_ce' in figures:
        ce = sorted(figures['step_s']['ce'])[len(figures['step_s']['ce']) // 2]
        return f'CE step {ce * 1e3:.1f} ms; ' + ', '.join(
            f"{name} {ratio['step_paired_median']:.3f}x"
            for name, ratio in figures['ratio_to_ce'].items())
    return '; '.join(
        f"{tuple(row['config'])}: loss {row['mmlt']['time']['loss'] * 1e3:.2f}"
        f" ms = {row['mmlt']['time']['loss'] / row['mmlt']['time']['matmul']:.2f}"
        'x matmul' for row in figures)


def print_table(results: dict) -> None:
    env = results['environment']
    print(f"\nmmlt GPU kit on {env.get('gpu', 'CPU (no GPU visible)')}, torch "
          f"{env['torch']}, Python {env['python']}; {results['device']} "
          f"sizes; {results['total_seconds']:.0f} s in all")
    width = max(len(r['name']) for r in results['steps'])
    for record in results['steps']:
        seconds = record.get('seconds')
        seconds = f'{seconds:6.1f} s' if seconds is not None else ' ' * 8
        print(f"{record['name']:<{width}} {record['status']:<7} {seconds}  "
              f'{summary(record)}')
    print(f"results: {results['results_file']}")


def run(args) -> int:
    """Measure on this machine; write ``args.results``; 1 if a step failed."""
    import torch
    start = time.time()
    device = args.device
    if device == 'auto':
        device = 'cuda' if torch.cuda.is_available() else 'cpu'
    missing = missing_prerequisites(['cls'] + (['det'] if args.det else []))
    if missing:
        raise KitError(
            'compiled packages the kit does not carry are missing: '
            f'`pip install {" ".join(missing)}` (or, without network, '
            '`pip download --only-binary=:all: --python-version '
            f'{sys.version_info[0]}.{sys.version_info[1]} {" ".join(missing)}`'
            ' on a networked machine, copy the wheels and `pip install` them)')
    kit_src = osp.dirname(osp.dirname(osp.abspath(__file__)))
    sizes = SIZES[device]
    deadline = start + args.budget_s
    results = dict(environment=environment_record(), device=device,
                   sizes=sizes, results_file=osp.abspath(args.results))
    with tempfile.TemporaryDirectory(prefix='mmlt_kit_run_') as tmp:
        steps = training_steps(kit_src, args.data, device, sizes, deadline,
                               tmp)
        steps += benchmark_steps(kit_src, device, sizes, deadline, tmp)
        steps += det_steps(osp.dirname(kit_src), kit_src, args.data, device,
                           deadline, tmp) if args.det else [
                               skipped('detection half', 'off (--det)')]
    results.update(steps=steps, total_seconds=round(time.time() - start, 1))
    with open(args.results, 'w') as f:
        json.dump(results, f, indent=1)
    print_table(results)
    return int(any(r['status'] == 'failed' for r in steps))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    commands = parser.add_subparsers(dest='command', required=True)
    packer = commands.add_parser('pack', help='build the kit (networked '
                                 'machine with the dev environment)')
    packer.add_argument('out', help='the archive to write (.tar.gz)')
    packer.add_argument('--python-versions', nargs='+',
                        default=list(PYTHON_VERSIONS))
    packer.add_argument('--fashion-mnist-root', default=FASHION_MNIST_ROOT)
    packer.add_argument('--max-mib', type=float, default=MAX_MIB)
    runner = commands.add_parser('run', help='measure (inside the unpacked '
                                 "kit's venv: bash run.sh)")
    kit_data = osp.join(osp.dirname(osp.abspath(__file__)), '..', '..',
                        'data', 'fashion-mnist')
    runner.add_argument('--data', default=osp.abspath(kit_data) if osp.isdir(
        kit_data) else FASHION_MNIST_ROOT, help='Fashion-MNIST IDX files')
    runner.add_argument('--results', default='results.json')
    runner.add_argument('--device', choices=['auto', 'cuda', 'cpu'],
                        default='auto', help='cpu: the tiny CPU path')
    runner.add_argument('--budget-s', type=float, default=450,
                        help='stop starting measurements after this long')
    runner.add_argument('--det', action='store_true', help="build mmcv's ops "
                        'for this GPU (needs nvcc) and run check_gpu.py whole')
    worker = commands.add_parser('train-worker')
    worker.add_argument('--amp', choices=AMP_MODES, required=True)
    for flag in ('--data', '--out'):
        worker.add_argument(flag, required=True)
    for flag in ('--iters', '--warmup', '--workers'):
        worker.add_argument(flag, type=int, required=True)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        if args.command == 'pack':
            pack(args.out, args.python_versions, args.fashion_mnist_root,
                 args.max_mib)
        elif args.command == 'run':
            return run(args)
        else:
            train_worker(args)
    except KitError as error:
        print(f'[gpu_kit] ERROR: {error}', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
