#!/usr/bin/env bash
# Sets up everything mmrepvit needs in the active Python environment, idempotently:
#   1. PyTorch (kept if already importable, if it is torch >= 2.1; otherwise
#      torch==2.13.0 is installed),
#   2. mmcv 2.1.0 WITH its compiled ops (RoIAlign, NMS, ...), built from the source
#      release once per machine and cached as a wheel outside the repository; an
#      mmcv 2.1.0 already installed whose ops work is kept, never rebuilt, and any
#      other mmcv (2.2.x, which MMDetection 3.3 refuses, 2.0.x, 1.x, mmcv-lite)
#      stops the script with what to do, before anything is installed. Where torch
#      sees a GPU, the ops must run on CUDA tensors too: an mmcv without CUDA ops
#      stops the script, and so does a GPU machine where they cannot be built (no
#      nvcc of torch's CUDA version), with the fix, before anything is installed,
#   3. MMEngine, MMDetection, MMSegmentation and the rest from requirements.txt,
#      with every transitive dependency pinned by constraints.txt (for torch 2.1.x
#      and 2.2.x, built against NumPy 1.x: with constraints-torch2.1.txt's
#      NumPy 1.x pins in place of constraints.txt's),
#   4. mmrepvit itself in editable mode.
# A second run only checks, and finishes in seconds. The decisions that depend on
# what is installed are tools/_install_checks.py's (tests/test_install.py).
#
# Environment variables:
#   PYTHON             interpreter to install into (default: python; Python >= 3.10)
#   MMREPVIT_CACHE     where the built mmcv wheel is kept (default: ~/.cache/mmrepvit)
#   MMCV_BUILD_JOBS    parallel compile jobs for mmcv (default: number of cores)
#   CUDA_HOME          the CUDA toolkit to build mmcv's CUDA ops with (default: the
#                      one whose nvcc is on the PATH, else /usr/local/cuda)
#   FORCE_CUDA=1       build the CUDA ops on a machine without a GPU too (for the
#                      GPUs in TORCH_CUDA_ARCH_LIST, else all that torch supports)
#   MMREPVIT_CONSTRAINTS  a constraints file to use instead (your own pinned stack)
set -euo pipefail

PYTHON=${PYTHON:-python}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${MMREPVIT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mmrepvit}
MMCV_VERSION=2.1.0
TORCH_DEFAULT=2.13.0

say() { printf '\033[1m[mmrepvit install]\033[0m %s\n' "$*"; }
fail() {
  printf '\033[31m[mmrepvit install] FAILED:\033[0m %s\n' "$1" >&2
  [ $# -gt 1 ] && printf '  what to do: %s\n' "$2" >&2
  exit 1
}
pip_install() { "$PYTHON" -m pip install --disable-pip-version-check -q "$@"; }
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
checks() {  # tools/_install_checks.py in $PYTHON: prints its answer; on a refusal
  # (exit 3; 4: torch cannot use the GPU it sees) what is wrong (first line) and
  # what to do (the next ones)
  "$PYTHON" "$REPO/tools/_install_checks.py" "$@" 2>"$TMP/checks.err" && return
  local rc=$?
  case $rc in 3 | 4) ;; *) tail -n 3 "$TMP/checks.err" ;; esac  # a crash: its last words
  return $rc
}
refuse() {  # fail with the output of a refusing `checks`
  local why=${1%%$'\n'*} fix=
  [ "$why" = "$1" ] || fix=${1#*$'\n'}
  if [ -n "$fix" ]; then fail "$why" "$fix"; else fail "$why"; fi
}

"$PYTHON" -c 'import sys; assert sys.version_info >= (3, 10)' 2>/dev/null ||
  fail "'$PYTHON' is not Python >= 3.10 (constraints.txt pins releases that need 3.10 or newer)" \
       "set PYTHON=/path/to/python3.10 (or 3.11, 3.12, 3.13) and rerun"
say "python: $("$PYTHON" -c 'import sys; print(sys.executable, sys.version.split()[0])')"

# ---------------------------------------------------------------- 0. an mmcv already there
# Before anything is installed (no torch needed): an mmcv that this script did not
# install is never replaced, since it may be a CUDA build the user needs; one that
# cannot serve stops the script here. ORIGIN: "cache" (this script installed it).
MMCV_FOUND=$(checks found "$CACHE") || refuse "$MMCV_FOUND"
read -r MMCV_DIST MMCV_FOUND_VERSION MMCV_ORIGIN <<<"${MMCV_FOUND:-none - -}"
KEEP_OR_REPLACE="this script does not replace an mmcv it did not install (it may be a CUDA build you need). Either
    $PYTHON -m pip uninstall $MMCV_DIST
  and rerun: it then builds mmcv $MMCV_VERSION with its ops against your torch (CUDA ops too where
  torch sees a GPU: that needs nvcc of torch's CUDA version); or install mmcv $MMCV_VERSION built
  for your torch and CUDA yourself
  (OpenMMLab's prebuilt wheels cover torch up to 2.1, e.g.
    pip install mmcv==$MMCV_VERSION -f https://download.openmmlab.com/mmcv/dist/cu121/torch2.1.0/index.html)
  and rerun: a working mmcv $MMCV_VERSION with compiled ops is kept as it is."
case $MMCV_DIST:$MMCV_FOUND_VERSION in
  none:* | mmcv:$MMCV_VERSION) ;;
  mmcv-lite:*)
    fail "mmcv-lite $MMCV_FOUND_VERSION is installed: mmcv without the compiled ops (RoIAlign, NMS, ...) that Mask R-CNN needs" \
         "$KEEP_OR_REPLACE" ;;
  mmcv-full:*)
    fail "mmcv-full $MMCV_FOUND_VERSION is installed: mmcv 1.x, for MMDetection 2.x; MMDetection 3.3.0 needs mmcv >= 2.0.0rc4, < 2.2.0 and this project uses mmcv $MMCV_VERSION" \
         "$KEEP_OR_REPLACE" ;;
  mmcv:2.[2-9]* | mmcv:[3-9]*)
    fail "mmcv $MMCV_FOUND_VERSION is installed, but MMDetection 3.3.0 refuses mmcv >= 2.2.0 (it needs mmcv >= 2.0.0rc4, < 2.2.0); this project uses mmcv $MMCV_VERSION" \
         "$KEEP_OR_REPLACE" ;;
  *)
    fail "$MMCV_DIST $MMCV_FOUND_VERSION is installed; this project is built and tested with mmcv $MMCV_VERSION" \
         "$KEEP_OR_REPLACE" ;;
esac

# ---------------------------------------------------------------- 1. PyTorch
if "$PYTHON" -c 'import torch' 2>/dev/null; then
  say "torch $("$PYTHON" -c 'import torch; print(torch.__version__)' 2>/dev/null) already installed: keeping it"
else
  say "installing torch==$TORCH_DEFAULT"
  pip_install "torch==$TORCH_DEFAULT" ||
    fail "pip could not install torch==$TORCH_DEFAULT" \
         "install a PyTorch build for your machine (see pytorch.org), then rerun"
fi
# The pins for this torch (constraints.txt; for torch 2.1.x and 2.2.x, which need
# NumPy 1.x, merged with constraints-torch2.1.txt). Refuses a torch below the floor.
CONSTRAINTS_SET=$(checks constraints "$TMP/constraints.txt") || refuse "$CONSTRAINTS_SET"
CONSTRAINTS=$TMP/constraints.txt
if [ -n "${MMREPVIT_CONSTRAINTS:-}" ]; then
  CONSTRAINTS=$MMREPVIT_CONSTRAINTS
  [ -f "$CONSTRAINTS" ] || fail "MMREPVIT_CONSTRAINTS=$CONSTRAINTS: no such file"
  CONSTRAINTS_SET="$CONSTRAINTS (MMREPVIT_CONSTRAINTS)"
fi
say "pinned set: $CONSTRAINTS_SET"

# ---------------------------------------------------------------- 2. mmcv with ops
mmcv_ok() {  # mmcv $MMCV_VERSION whose compiled ops import and run (on CUDA tensors
  # too where torch sees a GPU); else prints why not (first line), what to do (the rest)
  checks mmcv "$MMCV_VERSION"
}
first_line() { printf '%s\n' "${1%%$'\n'*}"; }
rest() { [ "${1#*$'\n'}" = "$1" ] || printf '%s\n' "${1#*$'\n'}"; }
# The mmcv found in step 0 (if any) is mmcv $MMCV_VERSION. Kept when its ops work;
# replaced only when this script installed it (from its cache: for another torch,
# or without the CUDA ops that this machine's GPU needs).
INSTALL_MMCV=(-c "$CONSTRAINTS")
MMCV_RC=0
[ "$MMCV_DIST" = none ] || MMCV_WHY=$(mmcv_ok) || MMCV_RC=$?
if [ "$MMCV_DIST" = none ]; then
  say "mmcv is not installed"
elif [ $MMCV_RC = 4 ]; then  # torch cannot run on the GPU it sees: no mmcv helps
  refuse "$MMCV_WHY"
elif [ $MMCV_RC = 0 ]; then
  say "mmcv $MMCV_VERSION with compiled ops already installed: keeping it (not rebuilt)"
  INSTALL_MMCV=()
elif [ "$MMCV_ORIGIN" = cache ]; then
  say "mmcv $MMCV_VERSION, installed earlier by this script, does not run its compiled ops here ($(first_line "$MMCV_WHY")):"
  say "replacing it with mmcv $MMCV_VERSION for the current torch and GPU"
  INSTALL_MMCV+=(--force-reinstall --no-deps)
elif [ -n "$(rest "$MMCV_WHY")" ]; then  # ops without CUDA, or CUDA broken
  fail "mmcv $MMCV_VERSION is installed but $(first_line "$MMCV_WHY")" \
       "this script does not replace an mmcv it did not install, so first
    $PYTHON -m pip uninstall $MMCV_DIST
  then $(rest "$MMCV_WHY")"
else
  fail "mmcv $MMCV_VERSION is installed but $(first_line "$MMCV_WHY")" \
       "$KEEP_OR_REPLACE"
fi
if [ ${#INSTALL_MMCV[@]} -gt 0 ]; then
  # Where the wheel comes from: a cached one built for this torch with the ops this
  # machine needs (CUDA ops for its GPUs where torch sees one; a wheel without them
  # is never used there), or a build; a GPU machine that cannot build CUDA ops (no
  # nvcc, or one of another CUDA major version than torch's) stops here, before
  # anything is installed.
  PLAN=$(checks plan "$CACHE") || refuse "$PLAN"
  read -r PLAN_ACTION WHEEL_DIR PLAN_OPS PLAN_INCLUDES <<<"$PLAN"
  WHEEL=
  if [ "$PLAN_ACTION" = use ]; then WHEEL=$WHEEL_DIR; WHEEL_DIR=$(dirname "$WHEEL"); fi
  # mmcv's setup.py imports pkg_resources (setuptools < 70) and torch, so it is built
  # without build isolation, against the torch installed above. setuptools < 70 also
  # stays installed on purpose: MMEngine resolves 'mmdet::' config paths with
  # pkg_resources at run time. pip then notes that torch's metadata asks for
  # setuptools >= 77; torch needs it only to compile C++ extensions, not to run.
  pip_install -c "$CONSTRAINTS" 'setuptools>=60,<70' wheel ninja numpy ||
    fail "could not install the build tools (setuptools<70, wheel, ninja)"
  mkdir -p "$WHEEL_DIR"
  if [ -z "$WHEEL" ]; then
    if [ "$PLAN_OPS" = cuda ]; then
      say "building mmcv $MMCV_VERSION with compiled CPU and CUDA ops from source ($(basename "$WHEEL_DIR"))"
      export FORCE_CUDA=1
      if [ -n "$PLAN_INCLUDES" ]; then  # the toolkit lacks the CUDA library headers
        say "with the CUDA library headers of torch's pip packages: $PLAN_INCLUDES"
        export CPATH=$PLAN_INCLUDES${CPATH:+:$CPATH}
      fi
    else
      say "building mmcv $MMCV_VERSION with compiled ops from source (10 to 30 minutes on 2 cores)"
      export FORCE_CUDA=0
    fi
    BUILD_START=$SECONDS
    BUILD=$TMP/build
    mkdir -p "$BUILD"
    # pip unpacks the source release, then runs its setup.py for the metadata, which
    # fails on Python >= 3.13 (tools/_mmcv_build.py's mend_source says why). So pip
    # keeps its unpacked tree (--no-clean, inside $BUILD), whatever its exit status,
    # and the build below starts from that tree, mended.
    mkdir -p "$BUILD/tmp"
    TMPDIR="$BUILD/tmp" "$PYTHON" -m pip download --disable-pip-version-check -q --no-deps \
      --no-binary :all: --no-clean -d "$BUILD" "mmcv==$MMCV_VERSION" >"$BUILD/download.log" 2>&1 || true
    SRC=$(checks mend "$BUILD/tmp" "$MMCV_VERSION") || { tail -n 5 "$BUILD/download.log" >&2
       fail "could not download the mmcv $MMCV_VERSION source release ($(first_line "$SRC"); pip's log: above)" \
            "check access to PyPI (or your pip index) and rerun"; }
    export MMCV_WITH_OPS=1 MAX_JOBS=${MMCV_BUILD_JOBS:-$(nproc 2>/dev/null || echo 2)}
    LOG="$CACHE/mmcv-build.log"
    if ! "$PYTHON" -m pip wheel --disable-pip-version-check --no-build-isolation --no-deps \
         -w "$WHEEL_DIR" "$SRC" >"$LOG" 2>&1; then
      tail -n 30 "$LOG" >&2
      fail "building mmcv $MMCV_VERSION failed; full log: $LOG" \
           "make sure gcc/g++ and the Python headers are installed (Debian: apt-get install build-essential python3-dev)"
    fi
    WHEEL=$(ls "$WHEEL_DIR"/mmcv-$MMCV_VERSION-*.whl | head -n1)
    BUILD_TIME=$((SECONDS - BUILD_START))
    say "built mmcv $MMCV_VERSION in $((BUILD_TIME / 60)) min $((BUILD_TIME % 60)) s ($MAX_JOBS jobs); cached $WHEEL"
  else
    say "using cached mmcv wheel $WHEEL"
  fi
  pip_install "${INSTALL_MMCV[@]}" "$WHEEL" || fail "could not install $WHEEL" "delete it and rerun to rebuild"
  MMCV_WHY=$(mmcv_ok) || fail "mmcv installed but $(first_line "$MMCV_WHY")" \
    "delete $WHEEL_DIR and rerun to rebuild against the current torch"
fi

# ---------------------------------------------------------------- 3. the rest
deps_ok() {
  # Run from / so that the repository itself is not on sys.path: mmrepvit must
  # import from its editable install, pointing at this checkout.
  (cd / && "$PYTHON" - "$REPO" <<'PY' 2>/dev/null)
import os, sys
from importlib.metadata import version
repo = sys.argv[1]
for line in open(os.path.join(repo, 'requirements.txt')):
    # 'name==version', or a bare 'name' whose version constraints.txt pins
    name, _, want = line.split('#')[0].strip().partition('==')
    if name:
        have = version(name)  # raises if it is not installed
        assert not want or have == want, (name, have, want)
import mmrepvit
assert os.path.samefile(os.path.dirname(mmrepvit.__file__),
                        os.path.join(repo, 'mmrepvit')), mmrepvit.__file__
PY
}
if deps_ok; then
  say "MMEngine, MMDetection, MMSegmentation and mmrepvit already installed"
else
  say "installing $(sed 's/#.*//' "$REPO/requirements.txt" | tr -s ' \n' ' ')"
  pip_install -c "$CONSTRAINTS" -r "$REPO/requirements.txt" ||
    fail "pip could not install requirements.txt" "check access to PyPI and rerun"
  say "installing mmrepvit (editable)"
  pip_install --no-deps --no-build-isolation -e "$REPO" ||
    fail "pip could not install mmrepvit in editable mode"
  deps_ok || fail "dependencies installed but do not import" "run: $PYTHON -c 'import mmdet, mmseg, mmrepvit'"
fi
MMCV_WHY=$(mmcv_ok) || fail "mmcv no longer works after installing the requirements: $(first_line "$MMCV_WHY")" "rerun this script"
say "ready: $("$PYTHON" -c 'import torch, mmcv, mmdet, mmseg, mmengine; print(f"torch {torch.__version__}, mmcv {mmcv.__version__}, mmengine {mmengine.__version__}, mmdet {mmdet.__version__}, mmseg {mmseg.__version__}")')"
