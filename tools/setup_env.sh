#!/usr/bin/env bash
# One command that makes the development environment of mmlt on a fresh machine:
#   a virtual environment (.venv, or $MMLT_VENV) with torch, mmengine, mmcv (with compiled
#   ops), MMPretrain, MMDetection, the LVIS API and the test tools, and mmlt in editable mode.
#
# mmcv 2.1.0 has no prebuilt wheel on PyPI, so it is built once from the sdist (about 20 min
# on 2 cores) and the wheel is cached outside the repo, keyed by mmcv, torch, Python and
# CUDA/CPU, under $MMLT_CACHE (default ~/.cache/mmlt). Later runs take minutes.
# Idempotent: a second run with nothing changed only checks and exits.
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

STAMP="$VENV/.mmlt-setup-stamp"
STAMP_KEY="$(cat "$CONSTRAINTS" "$ROOT/setup.py" "$0" | sha256sum | cut -c1-16)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$STAMP_KEY" ] \
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

# mmcv with compiled ops: from the wheel cache, or built once and cached.
if "$PY" -c "import mmcv, mmcv.ops; assert mmcv.__version__ == '$MMCV_VERSION'" >/dev/null 2>&1; then
    say "mmcv $MMCV_VERSION with ops already installed"
else
    PYTAG="$("$PY" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')"
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1 \
            && "$PY" -c "import torch, sys; sys.exit(0 if torch.version.cuda else 1)"; then
        FORCE_CUDA=1
        DEVTAG="cu$("$PY" -c 'import torch; print(torch.version.cuda.replace(".", ""))')"
    else
        FORCE_CUDA=0
        DEVTAG=cpu
    fi
    WHEEL_DIR="$CACHE/wheels/mmcv-$MMCV_VERSION-torch$TORCH_VERSION-$PYTAG-$DEVTAG-$(uname -m)"
    mkdir -p "$WHEEL_DIR"
    if ! ls "$WHEEL_DIR"/mmcv-*.whl >/dev/null 2>&1; then
        say "building mmcv $MMCV_VERSION from source (FORCE_CUDA=$FORCE_CUDA; about 20 min on 2 cores)"
        BUILD="$(mktemp -d)"
        trap 'rm -rf "$BUILD"' EXIT
        "$PY" -m pip download -q --no-deps --no-binary :all: "mmcv==$MMCV_VERSION" -d "$BUILD"
        tar -xzf "$BUILD"/mmcv-"$MMCV_VERSION".tar.gz -C "$BUILD"
        SRC="$BUILD/mmcv-$MMCV_VERSION"
        # torch >= 2.4 headers need C++20; mmcv 2.1.0's setup.py hard-codes -std=c++17.
        sed -i 's/-std=c++17/-std=c++20/g' "$SRC/setup.py"
        (cd "$SRC" && MMCV_WITH_OPS=1 FORCE_CUDA=$FORCE_CUDA MAX_JOBS="${MAX_JOBS:-$(nproc)}" \
            "$PY" -m pip wheel --no-build-isolation --no-deps -w "$WHEEL_DIR" . )
        say "cached $(ls "$WHEEL_DIR"/mmcv-*.whl)"
    else
        say "using cached $(ls "$WHEEL_DIR"/mmcv-*.whl)"
    fi
    "${PIP[@]}" --no-deps "$(ls "$WHEEL_DIR"/mmcv-*.whl | head -n1)"
    # mmcv's own run-time requirements
    "${PIP[@]}" addict mmengine packaging Pillow pyyaml yapf opencv-python
fi

say "installing mmlt (editable) with MMPretrain, MMDetection and the test tools"
"${PIP[@]}" -e "$ROOT[all,tests]"
"$PY" -c "import mmcv.ops, mmpretrain, mmdet, mmlt; print('[setup_env] ok: mmlt', mmlt.__version__, '| mmcv', mmcv.__version__, '| mmpretrain', mmpretrain.__version__, '| mmdet', mmdet.__version__)"
echo "$STAMP_KEY" > "$STAMP"
say "done: activate with 'source $VENV/bin/activate'"
