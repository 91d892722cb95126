#!/usr/bin/env bash
# Checks, in about a minute of CPU per row, that the pinned set still resolves on every
# Python and torch this project supports. A row is an interpreter and a torch version;
# for each, in a throwaway virtual environment, pip's resolver runs in dry-run mode
# (nothing is installed or built) with the constraints tools/install.sh uses for that
# torch (constraints.txt; for torch 2.1.x and 2.2.x, merged with the NumPy 1.x
# overrides of constraints-torch2.1.txt: `python tools/_install_checks.py constraints
# OUT --torch VERSION`)
#   1. on `-c CONSTRAINTS -r requirements.txt`: it must resolve, and every package it
#      picks must be pinned by a line of CONSTRAINTS whose marker matches that Python
#      (the whole tree pinned);
#   2. on the same plus torch==VERSION: PyTorch must exist for that Python and agree
#      with the pins.
# Then it prints one line per row, OK or FAIL with pip's first error, and exits 1 if
# any failed. Run it after changing a pin. It needs the package index (it is not one
# of the unit tests, which never reach the network).
#
# Supported torch: 2.1.2 (the oldest tested; pyproject.toml and tools/install.sh
# refuse torch < 2.1) to 2.13.0 (the newest tested, the one tools/install.sh installs).
#
# usage: .dev_scripts/check_install_matrix.sh [--install] [--torch VERSION] [PYTHON ...]
#   default rows: python3.10 ... python3.14 (the Pythons torch 2.13 has wheels for)
#   with torch 2.13.0, then python3.10 and python3.11 (torch 2.1 has wheels for
#   these two only) with torch 2.1.2, interpreters found under pyenv or on PATH;
#   missing ones are reported as SKIP and do not fail the check.
#   PYTHON ...: these interpreters instead, each with torch --torch VERSION (default
#   $TORCH_VERSION, else 2.13.0).
#   --install: where the dry run passed, also install for real, as a user would, and
#   test: a fresh virtual environment per row, `pip install torch==VERSION` first for
#   a torch other than 2.13.0 (install.sh keeps an existing torch), then `bash
#   tools/install.sh` (the mmcv wheel cache is used as usual: empty it, or set
#   MMREPVIT_CACHE, to time a build), then `python -m pytest tests -q` ($PYTEST_ARGS
#   replaces `tests -q`). Adds install time, test time and pytest's summary to the
#   table; logs stay in $MATRIX_LOGS (default ./work_dirs/install_matrix). Heavy:
#   minutes to tens of minutes per row, and several GB of disk for a CUDA torch
#   (removed after each row).
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TORCH_DEFAULT=2.13.0  # what tools/install.sh installs where there is no torch
TORCH_VERSION=${TORCH_VERSION:-$TORCH_DEFAULT}
# default rows: "PYTHON_VERSION TORCH_VERSION"
ROWS=("3.10 2.13.0" "3.11 2.13.0" "3.12 2.13.0" "3.13 2.13.0" "3.14 2.13.0"
      "3.10 2.1.2" "3.11 2.1.2")
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

find_python() {  # newest pyenv patch release of $1, else python$1 on PATH
  local v=$1 root py
  if root=$(pyenv root 2>/dev/null); then
    py=$(ls -d "$root"/versions/"$v".*/bin/python"$v" 2>/dev/null | sort -V | tail -n1)
    [ -n "$py" ] && { echo "$py"; return; }
  fi
  py=$(command -v "python$v" 2>/dev/null) && "$py" -c '' 2>/dev/null && echo "$py"
}

first_error() {  # pip's first ERROR line, with the conflict it explains if any
  grep -v '^WARNING: Location' "$1" | awk '
    /^ERROR:/ && !err { err = $0 }
    /The conflict is caused by:/ { c = 1; next }
    c && /^ *$/ { c = 0 }
    c { sub(/^ +/, ""); why = why (why ? "; " : "") $0 }
    END { if (!err) err = "pip failed (see its output)"; print err (why ? " [" why "]" : "") }' |
    cut -c1-300
}

check() {  # prints "OK ..." or "FAIL ..." for interpreter $1 and torch $2
  local py=$1 torch=$2 venv="$WORK/venv" vpy out
  rm -rf "$venv"
  "$py" -m venv "$venv" >"$WORK/venv.log" 2>&1 || { echo "FAIL could not create a venv: $(tail -n1 "$WORK/venv.log")"; return; }
  vpy=$venv/bin/python
  if ! "$vpy" -c 'import pip, sys; sys.exit(tuple(map(int, pip.__version__.split(".")[:2])) < (22, 2))' 2>/dev/null; then
    "$vpy" -m pip install -q --disable-pip-version-check 'pip>=22.2' >"$WORK/pip.log" 2>&1 ||
      { echo "FAIL pip >= 22.2 (for --dry-run) could not be installed: $(first_error "$WORK/pip.log")"; return; }
  fi
  "$vpy" "$REPO/tools/_install_checks.py" constraints "$WORK/constraints.txt" --torch "$torch" \
    >"$WORK/set.log" 2>&1 || { echo "FAIL $(head -n1 "$WORK/set.log")"; return; }
  local pip=("$vpy" -m pip install --dry-run --ignore-installed --disable-pip-version-check
             -c "$WORK/constraints.txt" -r "$REPO/requirements.txt")
  "${pip[@]}" --report "$WORK/tree.json" >"$WORK/tree.log" 2>&1 ||
    { echo "FAIL $(first_error "$WORK/tree.log")"; return; }
  # Every package of the tree must be pinned for this Python (markers evaluated by
  # the packaging library that pip vendors, in the interpreter under test).
  out=$("$vpy" - "$WORK/constraints.txt" "$WORK/tree.json" <<'PY'
import json, re, sys
from pip._vendor.packaging.requirements import Requirement
norm = lambda name: re.sub(r'[-_.]+', '-', name).lower()
pinned = set()
for line in open(sys.argv[1]):
    line = line.split('#')[0].strip()
    if line:
        req = Requirement(line)
        if req.marker is None or req.marker.evaluate():
            pinned.add(norm(req.name))
got = {norm(i['metadata']['name']): i['metadata']['version']
       for i in json.load(open(sys.argv[2]))['install']}
loose = [f'{n}=={v}' for n, v in sorted(got.items()) if n not in pinned]
print(len(got), ' '.join(loose))
PY
) || { echo "FAIL could not read pip's report"; return; }
  local count=${out%% *} loose=${out#* }
  [ "$loose" = "$out" ] && loose=
  [ -n "$loose" ] && { echo "FAIL not pinned in $(head -n1 "$WORK/set.log") for this Python: $loose"; return; }
  "${pip[@]}" "torch==$torch" >"$WORK/torch.log" 2>&1 ||
    { echo "FAIL with torch==$torch: $(first_error "$WORK/torch.log")"; return; }
  local numpy
  numpy=$(grep -o 'numpy-[0-9][^ ]*' "$WORK/torch.log" | tail -n1)
  echo "OK   $count pinned packages + torch $torch (${numpy/-/ })"
}

INSTALL=0
while [ $# -gt 0 ]; do
  case $1 in
    --install) INSTALL=1; shift ;;
    --torch) TORCH_VERSION=${2:?--torch needs a version}; shift 2 ;;
    *) break ;;
  esac
done
LOGS=${MATRIX_LOGS:-$PWD/work_dirs/install_matrix}

install_and_test() {  # prints "install Ns (how mmcv came), tests Ns: SUMMARY", or "FAIL ..."
  local py=$1 torch=$2 tag=$3 venv="$WORK/install-venv" t0 rc summary how
  mkdir -p "$LOGS"
  rm -rf "$venv"
  "$py" -m venv "$venv" || { echo "FAIL could not create a venv"; return; }
  t0=$SECONDS
  if [ "$torch" != "$TORCH_DEFAULT" ]; then  # install.sh keeps the torch it finds
    "$venv/bin/python" -m pip install --disable-pip-version-check -q "torch==$torch" \
      >"$LOGS/torch-$tag.log" 2>&1 ||
      { rm -rf "$venv"; echo "FAIL pip install torch==$torch (log: $LOGS/torch-$tag.log)"; return; }
  fi
  (cd "$REPO" && PATH="$venv/bin:$PATH" VIRTUAL_ENV="$venv" PYTHON="$venv/bin/python" \
     bash tools/install.sh) >"$LOGS/install-$tag.log" 2>&1
  rc=$?
  local tinst=$((SECONDS - t0))
  if grep -q 'building mmcv' "$LOGS/install-$tag.log"; then
    how="mmcv built$(grep -o ' in [0-9]* min [0-9]* s' "$LOGS/install-$tag.log" | head -n1)"
  elif grep -q 'using cached mmcv wheel' "$LOGS/install-$tag.log"; then how='mmcv from cache'
  else how='mmcv kept'; fi
  if [ $rc -ne 0 ]; then
    rm -rf "$venv"
    echo "FAIL install after ${tinst}s: $(grep -m1 'FAILED' "$LOGS/install-$tag.log" | sed 's/\x1b\[[0-9;]*m//g') (log: $LOGS/install-$tag.log)"
    return
  fi
  t0=$SECONDS
  # shellcheck disable=SC2086
  (cd "$REPO" && PATH="$venv/bin:$PATH" VIRTUAL_ENV="$venv" \
     "$venv/bin/python" -m pytest ${PYTEST_ARGS:-tests -q} -p no:cacheprovider) >"$LOGS/pytest-$tag.log" 2>&1
  rc=$?
  local ttest=$((SECONDS - t0))
  summary=$(grep -E '(passed|failed|error)' "$LOGS/pytest-$tag.log" | tail -n1 | tr -d '=' | sed 's/^ *//; s/ *$//')
  local versions
  versions=$("$venv/bin/python" -c 'import torch, mmcv, numpy; print(f"torch {torch.__version__}, numpy {numpy.__version__}")' 2>/dev/null)
  rm -rf "$venv"
  [ $rc -eq 0 ] && echo "install ${tinst}s ($how; $versions), tests ${ttest}s: $summary" ||
    echo "FAIL install ${tinst}s ($how; $versions), tests ${ttest}s: ${summary:-pytest exit $rc} (log: $LOGS/pytest-$tag.log)"
}

PYTHONS=() TORCHES=()
if [ $# -gt 0 ]; then
  for py in "$@"; do PYTHONS+=("$py"); TORCHES+=("$TORCH_VERSION"); done
else
  for row in "${ROWS[@]}"; do
    read -r v torch <<<"$row"
    py=$(find_python "$v") || true
    PYTHONS+=("${py:-python$v}"); TORCHES+=("$torch")
  done
fi

failed=0
rows=()
for i in "${!PYTHONS[@]}"; do
  py=${PYTHONS[$i]} torch=${TORCHES[$i]}
  start=$SECONDS
  if ver=$("$py" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])' 2>/dev/null); then
    printf 'checking %s (%s) with torch %s ...\n' "$py" "$ver" "$torch" >&2
    result=$(check "$py" "$torch")
    if [ $INSTALL = 1 ] && [ "${result:0:2}" = OK ]; then
      printf 'installing and testing in a fresh venv (%s, torch %s) ...\n' "$ver" "$torch" >&2
      result="$result; $(install_and_test "$py" "$torch" "$ver-torch$torch")"
    fi
  else
    ver=-; result="SKIP not found"
  fi
  case $result in FAIL* | *"; FAIL"*) failed=1 ;; esac
  rows+=("$(printf '%-8s %-7s %-44s %4ss  %s' "$ver" "$torch" "$py" $((SECONDS - start)) "$result")")
  printf '%s\n' "${rows[-1]}" >&2
done
printf '%-8s %-7s %-44s %5s  %s\n' python torch interpreter time result
printf '%s\n' "${rows[@]}"
exit $failed
