#!/usr/bin/env bash
# Distributed training with torchrun, on one node or many.
#   bash tools/dist_train.sh CONFIG GPUS [train.py options]
# Multi-node: run on every node with the same MASTER_ADDR and PORT, e.g.
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=10.1.1.1 PORT=29500 bash tools/dist_train.sh CONFIG 8
# GPUS is the number of processes per node. Without CUDA, mmlt replaces nccl
# by gloo on the CPU (with a warning) only where nothing suggests GPUs; on a
# machine that looks like a GPU node (CUDA_VISIBLE_DEVICES, Slurm GPU
# variables, nvidia-smi on the PATH) training stops instead, unless the config
# sets env_cfg.dist_cfg.backend='gloo' or MMLT_ALLOW_CPU=1 (docs/gpu.md).
set -e
CONFIG=$1
GPUS=$2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
PYTHON=${PYTHON:-python}
if [ -z "$CONFIG" ] || [ -z "$GPUS" ]; then
    echo "usage: [NNODES=.. NODE_RANK=.. MASTER_ADDR=.. PORT=..] $0 CONFIG GPUS [options]" >&2
    exit 2
fi
DIR="$(cd "$(dirname "$0")" && pwd)"
PYTHONPATH="$DIR/..":$PYTHONPATH \
"$PYTHON" -m torch.distributed.run \
    --nnodes="$NNODES" \
    --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$GPUS" \
    --master_port="$PORT" \
    "$DIR/train.py" \
    "$CONFIG" \
    --launcher pytorch "${@:3}"
