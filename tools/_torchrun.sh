#!/usr/bin/env bash
# Shared by dist_train.sh and dist_test.sh: _torchrun.sh NPROC SCRIPT ARGS...
# Environment: NNODES (1), NODE_RANK (0), PORT (29500), MASTER_ADDR (127.0.0.1).
# Without CUDA the processes run on the CPU with the gloo backend.
set -e
NPROC=$1
SCRIPT=$2
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PYTHONPATH="$ROOT:$PYTHONPATH" OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} \
exec python -m torch.distributed.run \
    --nnodes="${NNODES:-1}" \
    --node_rank="${NODE_RANK:-0}" \
    --master_addr="${MASTER_ADDR:-127.0.0.1}" \
    --master_port="${PORT:-29500}" \
    --nproc_per_node="$NPROC" \
    "$ROOT/tools/$SCRIPT" "${@:3}" --launcher pytorch
