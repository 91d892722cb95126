#!/usr/bin/env bash
# Usage: tools/dist_train.sh CONFIG NPROC [train.py options]
# Environment: NNODES (1), NODE_RANK (0), PORT (29500), MASTER_ADDR (127.0.0.1).
# Starts NPROC processes per node with torchrun (GPUs, or CPU processes on the
# gloo backend where there is no CUDA).
if [ $# -lt 2 ]; then
  echo "usage: $0 CONFIG NPROC [train.py options]" >&2
  exit 2
fi
exec "$(dirname "$0")/_torchrun.sh" "$2" train.py "$1" "${@:3}"
