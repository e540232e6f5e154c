#!/usr/bin/env bash
# Distributed testing with torchrun, on one node or many.
#   bash tools/dist_test.sh CONFIG CHECKPOINT GPUS [test.py options]
# Same environment variables as dist_train.sh: NNODES, NODE_RANK, MASTER_ADDR, PORT.
set -e
CONFIG=$1
CHECKPOINT=$2
GPUS=$3
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
PYTHON=${PYTHON:-python}
if [ -z "$CONFIG" ] || [ -z "$CHECKPOINT" ] || [ -z "$GPUS" ]; then
    echo "usage: [NNODES=.. NODE_RANK=.. MASTER_ADDR=.. PORT=..] $0 CONFIG CHECKPOINT GPUS [options]" >&2
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
    "$DIR/test.py" \
    "$CONFIG" \
    "$CHECKPOINT" \
    --launcher pytorch "${@:4}"
