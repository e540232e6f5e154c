# The two commands of README.md. Both set up the environment first (idempotent:
# seconds when it exists; about 25 minutes on a fresh 2-core machine, most of it
# building mmcv once, which is then cached in ~/.cache/mmlt).
PY := .venv/bin/python

.PHONY: env demo test test-fast test-kit bench check-gpu gpu-kit

env:
	bash tools/setup_env.sh

# ProCo on Fashion-MNIST-LT (IF 100) on the CPU, then per-group accuracy and a plot.
demo: env
	$(PY) tools/demo.py

# The test suite (about 20 minutes on 2 cores once the environment exists),
# without the GPU kit's pack-and-install test (make test-kit).
test: env
	$(PY) -m pytest tests -q -p no:cacheprovider --durations=15 -m "not kit"

# The GPU kit: pack, install offline, run the CPU path (needs the package
# index; about 3 minutes).
test-kit: env
	$(PY) -m pytest tests/test_tools/test_gpu_kit.py -q -p no:cacheprovider

# The development loop: everything except trainings, subprocesses and
# 2-process jobs (markers in pytest.ini), about 2-3 minutes on 2 cores.
test-fast: env
	$(PY) -m pytest tests -q -p no:cacheprovider -m "not slow and not dist"

bench: env
	$(PY) benchmarks/bench_proco_loss.py

# First run on a GPU machine: mmcv's CUDA ops against their CPU results, then a
# few iterations of a classification and a detection config with and without
# --amp (on a CPU-only machine: the CPU half, and says the GPU half was skipped).
check-gpu: env
	$(PY) tools/check_gpu.py

# The GPU kit (docs/gpu.md): everything a CUDA machine with torch and no network needs to
# measure mmlt, under 64 MiB; run it there with `bash mmlt-gpu-kit/run.sh`.
gpu-kit: env
	$(PY) tools/gpu_kit.py pack /tmp/mmlt-gpu-kit.tar.gz
