#!/usr/bin/env bash
# The second command of the mmlt GPU kit (tools/gpu_kit.py; docs/gpu.md), run inside the
# unpacked kit on the GPU machine, which needs no network:
#
#   bash run.sh [--det] [--budget-s S] [--results PATH] [--device cpu]
#
# 1. checks that $PYTHON (default python3) is Python 3.10-3.12 with torch >= 2.6 and
#    torchvision;
# 2. makes venv/ with --system-site-packages (it sees that torch; when $PYTHON is itself a
#    venv or conda env, its site-packages are added too) and installs the kit's wheels into
#    it offline (pip install --no-index --no-deps);
# 3. runs `python src/tools/gpu_kit.py run "$@"`: the figures go to results.json and a
#    table. Under 8 minutes on one GPU; without a GPU, the tiny CPU path.
set -euo pipefail
KIT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PYTHON="${PYTHON:-python3}"
VENV="${MMLT_KIT_VENV:-$KIT/venv}"
say() { printf '[gpu_kit] %s\n' "$*"; }
die() { printf '[gpu_kit] ERROR: %s\n' "$*" >&2; exit 2; }

command -v "$PYTHON" >/dev/null 2>&1 || die "no $PYTHON: set PYTHON=/path/to/the python that has torch"
PYVER="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
LIST="$KIT/wheels/py$PYVER.txt"
[ -f "$LIST" ] || die "Python $PYVER is not covered by this kit (it has:" \
    "$(cd "$KIT/wheels" && ls py*.txt | sed 's/^py//; s/\.txt$//' | tr '\n' ' '));" \
    "set PYTHON to one of those, or repack with" \
    "\`python tools/gpu_kit.py pack OUT --python-versions $PYVER\`"
"$PYTHON" - <<'PY' || die "see above"
import sys
try:
    import torch
except ImportError:
    sys.exit("[gpu_kit] no torch in %s: install torch >= 2.6 (the kit does not carry it), "
             "or set PYTHON=/path/to/the python that has it" % sys.executable)
version = tuple(int(v) for v in torch.__version__.split('+')[0].split('.')[:2])
if version < (2, 6):
    sys.exit("[gpu_kit] torch %s is older than 2.6, which mmlt needs: upgrade torch"
             % torch.__version__)
try:
    import torchvision  # noqa: F401  (MMPretrain imports it)
except Exception as error:
    sys.exit("[gpu_kit] torchvision does not import (%s): install the torchvision "
             "built for torch %s" % (error, torch.__version__))
PY

# MMLT_KIT_ISOLATED=1 (the kit's test): only $PYTHON's own site-packages, not its base's.
SYSTEM_SITE=--system-site-packages
[ "${MMLT_KIT_ISOLATED:-0}" = 1 ] && SYSTEM_SITE=
if [ ! -x "$VENV/bin/python" ]; then
    say "creating $VENV ${SYSTEM_SITE:-(isolated)}: it uses $PYTHON's torch"
    "$PYTHON" -m venv $SYSTEM_SITE "$VENV" \
        || die "python -m venv failed: install your distribution's venv package" \
               "(Debian/Ubuntu: apt-get install python$PYVER-venv)"
    # A venv or conda env as $PYTHON: venv's --system-site-packages would skip its packages.
    "$PYTHON" -c 'import site; print("\n".join(site.getsitepackages()))' | while read -r dir; do
        echo "import site; site.addsitedir('$dir')"
    done > "$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/_mmlt_kit_base.pth"
fi
say "installing the kit's wheels offline into $VENV"
(cd "$KIT/wheels" && "$VENV/bin/python" -m pip install --disable-pip-version-check -q \
    --no-index --no-deps $(cat "$LIST")) \
    || die "the offline install failed (above); the kit may be incomplete: repack it"
cd "$KIT/src"
exec "$VENV/bin/python" tools/gpu_kit.py run --results "${MMLT_KIT_RESULTS:-$KIT/results.json}" "$@"
