#!/usr/bin/env bash
# The prepared GPU check (maintainers): on a fresh CUDA machine, in about 8 minutes
# on one H100, tools/install.sh builds mmcv with CUDA ops (timed), then
# tests/test_cuda.py, 50 training iterations of the paper's Mask R-CNN + RepViT-M1.1
# at its batch (fp32 and AMP) beside the official run's s/iter and memory, and
# benchmark.py --split --cuda-amp for the det and seg configs, all in one Markdown
# report (default work_dirs/gpu_check/gpu_check.md). Options: `--help`; the steps
# are .dev_scripts/gpu_check.py's (tests/test_gpu_check.py checks them on the CPU).
#
#   .dev_scripts/gpu_check.sh                     # a CUDA machine with PyPI
#   .dev_scripts/gpu_check.sh --dry-run           # what it would run, anywhere
#   .dev_scripts/gpu_check.sh --prepare-wheelhouse .whl --for-python 3.12   # here,
#   .dev_scripts/gpu_check.sh --wheelhouse .whl   # then there, without network
#
# PYTHON: the interpreter (default python3), also the one installed into.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3}
exec "$PYTHON" .dev_scripts/gpu_check.py --python "$(command -v "$PYTHON")" "$@"
