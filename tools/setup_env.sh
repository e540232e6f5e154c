#!/usr/bin/env bash
# One command that makes the development environment of mmlt on a fresh machine:
#   a virtual environment (.venv, or $MMLT_VENV) with torch, mmengine, mmcv (with compiled
#   ops), MMPretrain, MMDetection, the LVIS API and the test tools, and mmlt in editable mode.
#
# mmcv 2.1.0 has no prebuilt wheel on PyPI, so it is built once from the sdist (about 20 min
# on 2 cores) and the wheel is cached outside the repo, keyed by mmcv, torch, Python and
# CUDA/CPU, under $MMLT_CACHE (default ~/.cache/mmlt). Later runs take minutes.
# Idempotent: a second run with nothing changed only checks and exits.
#
# The CUDA variant of mmcv (docs/gpu_install.md). Compiling it needs a CUDA compiler, not a GPU.
#   MMLT_CUDA=1|0          build and install mmcv with (1) or without (0) CUDA kernels; unset:
#                          CUDA when nvidia-smi sees a GPU and torch is a CUDA build.
#   MMLT_CUDA_TOOLKIT=auto|system|pip
#                          where nvcc comes from. system: $CUDA_HOME, else nvcc on PATH, else
#                          /usr/local/cuda; pip: NVIDIA's toolkit packages from the registry,
#                          installed into the venv in the versions torch was built with
#                          (cuda-toolkit[nvcc,cccl]); auto (default): system when it exists and
#                          its major version is torch's, else pip.
#   TORCH_CUDA_ARCH_LIST   GPU architectures to compile for, e.g. "8.6" or "8.0;9.0+PTX".
#                          Default: those of the GPUs torch sees; without a visible GPU,
#                          $DEFAULT_CUDA_ARCHS (below). Each architecture adds compile time.
#   MMLT_WHEEL_ONLY=1      build (or find) the mmcv wheel in the cache and stop, leaving the
#                          venv's mmcv as it is (e.g. to build on a login node without a GPU).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${MMLT_VENV:-$ROOT/.venv}"
CACHE="${MMLT_CACHE:-$HOME/.cache/mmlt}"
PYTHON="${PYTHON:-python3}"
CONSTRAINTS="$ROOT/requirements/constraints.txt"

say() { printf '[setup_env] %s\n' "$*"; }

pin() { sed -n "s/^$1==\([^ ]*\).*/\1/p" "$CONSTRAINTS" | head -n1; }
TORCH_VERSION="$(pin torch)"
TORCHVISION_VERSION="$(pin torchvision)"
SETUPTOOLS_VERSION="$(pin setuptools)"
MMCV_VERSION="$(pin mmcv)"

# Real data for the demo: Debian's Fashion-MNIST IDX files.
FMNIST_DIR=/usr/share/datasets/fashion-mnist
if [ ! -e "$FMNIST_DIR/train-images-idx3-ubyte.gz" ]; then
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        say "installing Debian's dataset-fashion-mnist (the demo's data)"
        apt-get update -qq >/dev/null 2>&1 || true
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null \
            || say "WARNING: could not install dataset-fashion-mnist; the demo will need its files"
    else
        say "WARNING: $FMNIST_DIR is missing; install Debian's dataset-fashion-mnist for the demo"
    fi
fi

die() { printf '[setup_env] ERROR: %s\n' "$*" >&2; exit 1; }

# Architectures compiled when MMLT_CUDA=1 and no GPU is visible (when one is, its own
# architecture is used): Turing 7.5 (T4, RTX 20xx), Ampere 8.0 (A100, A30) and 8.6 (RTX 30xx,
# A10, A40; its code also runs on Ada 8.9: RTX 40xx, L4, L40), Hopper 9.0 (H100, H200), plus
# 9.0's PTX, which the driver compiles once for newer GPUs (Blackwell). CUDA 13 dropped
# everything older than 7.5.
DEFAULT_CUDA_ARCHS="7.5;8.0;8.6;9.0+PTX"
case "${MMLT_CUDA:-}" in ''|0|1) ;; *) die "MMLT_CUDA must be 1 or 0, not '$MMLT_CUDA'" ;; esac
case "${MMLT_CUDA_TOOLKIT:-auto}" in auto|system|pip) ;;
    *) die "MMLT_CUDA_TOOLKIT must be auto, system or pip, not '$MMLT_CUDA_TOOLKIT'" ;; esac

STAMP="$VENV/.mmlt-setup-stamp"
# (The CUDA settings, unset, add nothing: the key of a plain set-up is what it always was.)
STAMP_KEY="$({ cat "$CONSTRAINTS" "$ROOT/setup.py" "$0"
               printf '%s' "${MMLT_CUDA:-}${TORCH_CUDA_ARCH_LIST:-}${MMLT_CUDA_TOOLKIT:-}"; } \
    | sha256sum | cut -c1-16)"
if [ "${MMLT_WHEEL_ONLY:-0}" != 1 ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$STAMP_KEY" ] \
        && "$VENV/bin/python" -c "import mmlt, mmcv.ops" >/dev/null 2>&1; then
    say "environment $VENV is up to date"
    exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
    say "creating virtual environment $VENV"
    "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip install --disable-pip-version-check -q -c "$CONSTRAINTS")

say "installing torch $TORCH_VERSION, torchvision $TORCHVISION_VERSION, setuptools $SETUPTOOLS_VERSION"
"${PIP[@]}" "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION" \
    "setuptools==$SETUPTOOLS_VERSION" wheel numpy ninja

# Builds mmcv from its sdist into the wheel cache directory $1, with CUDA kernels if $2 is 1.
build_mmcv_wheel() {
    local wheel_dir="$1" force_cuda="$2" build src start=$SECONDS
    build="$(mktemp -d)"
    trap "rm -rf '$build'" EXIT
    "$PY" -m pip download -q --no-deps --no-binary :all: "mmcv==$MMCV_VERSION" -d "$build"
    tar -xzf "$build"/mmcv-"$MMCV_VERSION".tar.gz -C "$build"
    src="$build/mmcv-$MMCV_VERSION"
    # torch >= 2.4 headers need C++20; mmcv 2.1.0's setup.py hard-codes -std=c++17 (for the
    # host compiler and for nvcc).
    sed -i 's/-std=c++17/-std=c++20/g' "$src/setup.py"
    (cd "$src" && MMCV_WITH_OPS=1 FORCE_CUDA=$force_cuda MAX_JOBS="${MAX_JOBS:-$(nproc)}" \
        "$PY" -m pip wheel --no-build-isolation --no-deps -w "$wheel_dir" . )
    say "built in $(( (SECONDS - start) / 60 )) min: $(ls "$wheel_dir"/mmcv-*.whl)"
}

nvcc_release() {  # "13.0" for a toolkit directory $1 whose bin/nvcc works, else nothing
    [ -x "$1/bin/nvcc" ] && "$1/bin/nvcc" --version 2>/dev/null \
        | sed -n 's/.*release \([0-9][0-9.]*\),.*/\1/p'
}

# Exports CUDA_HOME: a toolkit of torch's CUDA major version (cpp_extension refuses others),
# from the system or, per MMLT_CUDA_TOOLKIT, from NVIDIA's registry packages.
use_cuda_toolkit() {
    local mode="${MMLT_CUDA_TOOLKIT:-auto}" home="" release="" major="${TORCH_CUDA%%.*}"
    if [ "$mode" != pip ]; then
        home="${CUDA_HOME:-}"
        if [ -z "$home" ] && command -v nvcc >/dev/null 2>&1; then
            home="$(dirname "$(dirname "$(command -v nvcc)")")"
        fi
        [ -n "$home" ] || home=/usr/local/cuda
        release="$(nvcc_release "$home" || true)"
        if [ -n "$release" ] && [ "${release%%.*}" = "$major" ]; then
            export CUDA_HOME="$home"
            say "CUDA toolkit: $home (nvcc $release; torch was built with CUDA $TORCH_CUDA)"
            return
        fi
        [ "$mode" = auto ] || die "MMLT_CUDA_TOOLKIT=system: no CUDA $major.x nvcc at $home" \
            "(found '${release:-none}'); set CUDA_HOME to a CUDA $TORCH_CUDA toolkit, or use" \
            "MMLT_CUDA_TOOLKIT=pip to take NVIDIA's packages from the registry"
        say "no system CUDA $major.x toolkit (nvcc at $home: ${release:-none})"
    fi
    # torch's CUDA wheels depend on NVIDIA's cuda-toolkit meta-package; the same version of it
    # with the nvcc and cccl extras brings the compiler, crt, nvvm and thrust/cub headers that
    # match torch's CUDA runtime exactly. They land in site-packages/nvidia/cu<major>/, next
    # to the runtime, cuBLAS, cuSPARSE and cuSOLVER headers that torch's own wheels installed.
    local toolkit_version pkg view
    toolkit_version="$("$PY" -c 'from importlib.metadata import version; print(version("cuda-toolkit"))' \
        2>/dev/null)" || die "torch $TORCH_VERSION came without NVIDIA's cuda-toolkit package," \
        "so the matching compiler version is unknown: install a CUDA $TORCH_CUDA toolkit and" \
        "set CUDA_HOME (MMLT_CUDA_TOOLKIT=system)"
    say "installing NVIDIA's CUDA $TORCH_CUDA compiler into $VENV: cuda-toolkit[nvcc,cccl]==$toolkit_version"
    "${PIP[@]}" "cuda-toolkit[nvcc,cccl]==$toolkit_version"
    pkg="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/nvidia/cu$major"
    release="$(nvcc_release "$pkg" || true)"
    [ "${release%%.*}" = "$major" ] || die "cuda-toolkit[nvcc]==$toolkit_version gave no working" \
        "CUDA $major nvcc in $pkg/bin (found '${release:-none}')"
    # A toolkit-shaped view of the packages for cpp_extension: bin/, include/, nvvm/ as they
    # are, and lib64/ with the unversioned libcudart.so that `-lcudart` links against (the
    # wheels ship only libcudart.so.<major>).
    view="$VENV/cuda-$TORCH_CUDA"
    rm -rf "$view"
    mkdir -p "$view/lib64"
    for dir in bin include nvvm; do ln -s "$pkg/$dir" "$view/$dir"; done
    ln -s "$pkg"/lib/* "$view/lib64/"
    ln -sf "$pkg/lib/libcudart.so.$major" "$view/lib64/libcudart.so"
    ln -s lib64 "$view/lib"
    export CUDA_HOME="$view"
    say "CUDA toolkit: $view (NVIDIA's packages, nvcc $release)"
}

# Which mmcv: CPU kernels only, or CPU and CUDA kernels.
PYTAG="$("$PY" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')"
TORCH_CUDA="$("$PY" -c 'import torch; print(torch.version.cuda or "")')"
if [ "${MMLT_CUDA:-}" = 1 ]; then
    [ -n "$TORCH_CUDA" ] || die "MMLT_CUDA=1 needs a CUDA build of torch, but torch" \
        "$TORCH_VERSION in $VENV is a CPU build"
    FORCE_CUDA=1
elif [ -z "${MMLT_CUDA:-}" ] && [ -n "$TORCH_CUDA" ] && command -v nvidia-smi >/dev/null 2>&1 \
        && nvidia-smi >/dev/null 2>&1; then
    FORCE_CUDA=1
else
    FORCE_CUDA=0
fi
if [ "$FORCE_CUDA" = 1 ]; then
    # One line each: the architecture list, and its tag for the cache key ("sm80_86_90ptx").
    ARCH_LINES="$(DEFAULT_CUDA_ARCHS="$DEFAULT_CUDA_ARCHS" "$PY" - <<'EOF'
import os, re, sys
import torch
given = os.environ.get('TORCH_CUDA_ARCH_LIST', '').strip()
if not given and torch.cuda.is_available():
    caps = sorted({torch.cuda.get_device_capability(i)
                   for i in range(torch.cuda.device_count())})
    given = ';'.join(f'{major}.{minor}' for major, minor in caps)
archs = re.split(r'[;,\s]+', given or os.environ['DEFAULT_CUDA_ARCHS'])
archs = [arch for arch in archs if arch]
oldest = (7, 5) if int(torch.version.cuda.split('.')[0]) >= 13 else (5, 0)
for arch in archs:
    match = re.fullmatch(r'(\d+)\.(\d+)a?(\+PTX)?', arch)
    if match is None:
        sys.exit(f'TORCH_CUDA_ARCH_LIST: {arch!r} is not a compute capability '
                 'like "8.6" or "9.0+PTX"')
    if (int(match[1]), int(match[2])) < oldest:
        sys.exit(f'TORCH_CUDA_ARCH_LIST: CUDA {torch.version.cuda} cannot compile for '
                 f'{arch} (its oldest architecture is {oldest[0]}.{oldest[1]})')
print(';'.join(archs))
print('sm' + '_'.join(arch.replace('.', '').replace('+PTX', 'ptx') for arch in archs))
EOF
)" || die "bad TORCH_CUDA_ARCH_LIST (see above)"
    export TORCH_CUDA_ARCH_LIST="${ARCH_LINES%%$'\n'*}"
    DEVTAG="cu${TORCH_CUDA//./}-${ARCH_LINES##*$'\n'}"
else
    DEVTAG=cpu
fi
WHEEL_DIR="$CACHE/wheels/mmcv-$MMCV_VERSION-torch$TORCH_VERSION-$PYTAG-$DEVTAG-$(uname -m)"
MMCV_MARK="$VENV/.mmlt-mmcv-wheel"  # the cache key of the CUDA mmcv installed in the venv

# mmcv with compiled ops: from the wheel cache, or built once and cached.
if [ "${MMLT_WHEEL_ONLY:-0}" != 1 ] \
        && { [ "$FORCE_CUDA" = 0 ] || [ "$(cat "$MMCV_MARK" 2>/dev/null)" = "$(basename "$WHEEL_DIR")" ]; } \
        && "$PY" -c "import mmcv, mmcv.ops; assert mmcv.__version__ == '$MMCV_VERSION'" >/dev/null 2>&1; then
    say "mmcv $MMCV_VERSION with ops already installed"
else
    mkdir -p "$WHEEL_DIR"
    if ! ls "$WHEEL_DIR"/mmcv-*.whl >/dev/null 2>&1; then
        if [ "$FORCE_CUDA" = 1 ]; then
            use_cuda_toolkit
            say "building mmcv $MMCV_VERSION from source with CUDA $TORCH_CUDA kernels for" \
                "TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST (docs/gpu_install.md)"
        else
            say "building mmcv $MMCV_VERSION from source (FORCE_CUDA=0; about 20 min on 2 cores)"
        fi
        build_mmcv_wheel "$WHEEL_DIR" "$FORCE_CUDA"
    else
        say "using cached $(ls "$WHEEL_DIR"/mmcv-*.whl)"
    fi
    if [ "${MMLT_WHEEL_ONLY:-0}" = 1 ]; then
        say "MMLT_WHEEL_ONLY=1: the wheel is in $WHEEL_DIR; $VENV's mmcv is unchanged"
        exit 0
    fi
    if [ "$FORCE_CUDA" = 1 ]; then
        # same version as a CPU mmcv that may be installed: replace it
        "${PIP[@]}" --no-deps --force-reinstall "$(ls "$WHEEL_DIR"/mmcv-*.whl | head -n1)"
        basename "$WHEEL_DIR" > "$MMCV_MARK"
    else
        "${PIP[@]}" --no-deps "$(ls "$WHEEL_DIR"/mmcv-*.whl | head -n1)"
        rm -f "$MMCV_MARK"
    fi
    # mmcv's own run-time requirements
    "${PIP[@]}" addict mmengine packaging Pillow pyyaml yapf opencv-python
fi

say "installing mmlt (editable) with MMPretrain, MMDetection and the test tools"
"${PIP[@]}" -e "$ROOT[all,tests]"
"$PY" -c "import mmcv.ops, mmpretrain, mmdet, mmlt; print('[setup_env] ok: mmlt', mmlt.__version__, '| mmcv', mmcv.__version__, '| mmpretrain', mmpretrain.__version__, '| mmdet', mmdet.__version__)"
echo "$STAMP_KEY" > "$STAMP"
say "done: activate with 'source $VENV/bin/activate'"
