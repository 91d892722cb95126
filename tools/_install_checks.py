# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
"""The decisions of tools/install.sh that depend on what is installed (torch,
mmcv, the GPU and CUDA), in one place that the tests drive with a stubbed
``torch`` (no GPU needed). install.sh runs it with the interpreter it
installs into::

    python tools/_install_checks.py found CACHE
        which mmcv is installed, read from its metadata (no import, no
        torch): prints "DIST VERSION cache|other" ("cache": a wheel this
        script installed from CACHE), or nothing
    python tools/_install_checks.py constraints OUT [--torch VERSION]
        writes the constraints for this torch (or VERSION) to OUT and prints
        which set it is; refuses a torch older than the floor
    python tools/_install_checks.py plan CACHE
        where the mmcv wheel comes from: prints "use WHEEL" (a cached wheel
        with the ops this machine needs) or "build DIR cuda|cpu"; refuses
        (before anything is installed) when CUDA ops are needed but cannot
        be built here (tools/_mmcv_build.py)
    python tools/_install_checks.py mend ROOT VERSION
        prints the mmcv VERSION source tree unpacked under ROOT, its
        setup.py mended to run on every Python (tools/_mmcv_build.py)
    python tools/_install_checks.py mmcv VERSION
        whether mmcv VERSION's compiled ops run: RoIAlign and NMS on CPU
        tensors, and on CUDA tensors too when torch sees a GPU

A refusal exits 3 (4: torch sees a GPU but cannot use it) and prints what
is wrong on the first line, what to do on the next ones. Standard library
only, besides torch and mmcv (imported when needed), so that it runs before
anything is installed.
"""
import argparse
import json
import os
import re
import sys
from pathlib import Path

import _mmcv_build as build
from _mmcv_build import MMCV_VERSION, GpuUnusable, Refusal

REPO = Path(__file__).resolve().parents[1]
# The oldest torch this project is tested with is 2.1.2 (the torch 2.1.2 row
# of .dev_scripts/check_install_matrix.sh), the newest 2.13.0; pyproject.toml
# requires torch >= 2.1 (tests/test_install.py keeps the two equal).
TORCH_FLOOR = (2, 1)
# PyTorch's wheels before 2.3 are built against NumPy 1.x and cannot use
# NumPy 2; constraints-torch2.1.txt pins the NumPy 1.x stack for them.
NUMPY2_SINCE = (2, 3)


def parse_version(text):
    return tuple(int(v) for v in re.findall(r'\d+', text)[:3])


# ----------------------------------------------------------- constraints


def read_pins(path):
    """The lines of a constraints file, as (package name, line) pairs."""
    pins = []
    for line in Path(path).read_text().splitlines():
        text = line.split('#')[0].strip()
        if text:
            name = re.split(r'[=<>!~;\s\[]', text, maxsplit=1)[0]
            pins.append((re.sub(r'[-_.]+', '-', name).lower(), text))
    return pins


def merged_constraints(repo, version):
    """(name of the set, its text) for torch ``version`` (a tuple): the
    constraints.txt pins, with constraints-torch2.1.txt's lines replacing
    its lines for the same packages where torch predates NumPy 2 support."""
    if version[:2] < TORCH_FLOOR:
        floor = '.'.join(map(str, TORCH_FLOOR))
        raise Refusal(
            f'torch {".".join(map(str, version))} is installed, older than '
            f'{floor}, the oldest torch this project supports (tested from '
            f'2.1.2 to 2.13.0); tools/install.sh keeps an existing torch',
            f'install torch >= {floor} for your machine (pytorch.org; e.g. '
            f'pip install torch==2.1.2, for which OpenMMLab publishes '
            f'prebuilt mmcv {MMCV_VERSION} wheels), then rerun')
    base = read_pins(Path(repo) / 'constraints.txt')
    if version[:2] >= NUMPY2_SINCE:
        return 'constraints.txt', ''.join(f'{line}\n' for _, line in base)
    overrides = read_pins(Path(repo) / 'constraints-torch2.1.txt')
    replaced = {name for name, _ in overrides}
    lines = [line for name, line in base if name not in replaced]
    lines += [line for _, line in overrides]
    return ('constraints.txt with constraints-torch2.1.txt (NumPy 1.x)',
            ''.join(f'{line}\n' for line in sorted(lines, key=str.lower)))


# ------------------------------------------------------- the installed mmcv


def installed_mmcv(cache):
    """(distribution, version, origin) of the installed mmcv, read from its
    metadata; origin 'cache' for a wheel that install.sh installed from
    ``cache``, else 'other'. None if no mmcv is installed."""
    from importlib.metadata import PackageNotFoundError, distribution
    wheels = os.path.realpath(build.wheels_folder(cache)) + os.sep
    for name in ('mmcv', 'mmcv-full', 'mmcv-lite'):
        try:
            dist = distribution(name)
        except PackageNotFoundError:
            continue
        url = json.loads(dist.read_text('direct_url.json') or '{}').get(
            'url', '')
        folder = os.path.realpath(os.path.dirname(url[len('file://'):])) \
            if url.startswith('file://') else ''
        return name, dist.version, 'cache' if folder.startswith(wheels) \
            else 'other'
    return None


def run_ops(torch, ops, device):
    """NMS and RoIAlign on ``device``; raises if they fail or are wrong."""
    boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 10., 10.]],
                         device=device)
    scores = torch.tensor([0.9, 0.8], device=device)
    kept = ops.nms(boxes, scores, 0.5)[1]
    assert len(kept) == 1, f'NMS kept {len(kept)} of 2 overlapping boxes'
    features = torch.ones(1, 1, 8, 8, device=device)
    rois = torch.tensor([[0., 0., 0., 4., 4.]], device=device)
    out = ops.RoIAlign((2, 2), 1.0)(features, rois)
    assert tuple(out.shape) == (1, 1, 2, 2), tuple(out.shape)
    assert float(out.float().sum().cpu()) == 4.0, 'RoIAlign is wrong'


def first_line(error):
    text = str(error).strip().splitlines()
    return f'{type(error).__name__}: {text[0] if text else ""}'


def mmcv_problem(version, torch, load_ops=None):
    """None if mmcv ``version`` is installed and its compiled ops run on the
    CPU and, where torch sees a GPU, on CUDA tensors; else (what is wrong,
    what to do or ''). Raises GpuUnusable if torch cannot run on the GPU it
    sees (no mmcv could help)."""
    if load_ops is None:
        def load_ops():
            import mmcv
            if mmcv.__version__ != version:
                raise Refusal(f'mmcv {mmcv.__version__} is installed')
            import mmcv._ext  # noqa: F401 (the compiled extension)
            from mmcv import ops
            return ops
    try:
        ops = load_ops()
    except Refusal as error:
        return str(error), ''
    except Exception as error:  # ImportError, or an ABI mismatch
        return f'mmcv does not import with its ops: {first_line(error)}', ''
    try:
        run_ops(torch, ops, 'cpu')
    except Exception as error:
        return f'its compiled ops fail on the CPU: {first_line(error)}', ''
    if not torch.cuda.is_available():
        return None
    try:
        torch.ones(2, device='cuda').add_(1)
        torch.cuda.synchronize()  # CUDA errors surface here
    except Exception as error:
        raise GpuUnusable(
            f'torch {torch.__version__} sees a GPU but cannot run on it: '
            f'{first_line(error)}', 'check the NVIDIA driver (nvidia-smi) '
            'and that this torch build supports it (pytorch.org)')
    try:
        run_ops(torch, ops, 'cuda')
    except Exception as error:
        return (f'its compiled ops do not run on the GPU (an mmcv built '
                f'without CUDA ops, or for another GPU or torch): '
                f'{first_line(error)}', build.cuda_fix(torch))
    return None



# ----------------------------------------------------------- command line


def _import_torch():
    import warnings
    with warnings.catch_warnings():  # e.g. torch without numpy yet
        warnings.simplefilter('ignore')
        import torch
    return torch


def main(argv=None, torch=None, environ=None, out=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    sub = parser.add_subparsers(dest='command', required=True)
    sub.add_parser('found').add_argument('cache')
    con = sub.add_parser('constraints')
    con.add_argument('out')
    con.add_argument('--torch', help='this torch version instead of the '
                     'installed one (no torch needed)')
    con.add_argument('--repo', default=str(REPO))
    sub.add_parser('plan').add_argument('cache')
    mend = sub.add_parser('mend')
    mend.add_argument('root')
    mend.add_argument('version')
    sub.add_parser('mmcv').add_argument('version')
    args = parser.parse_args(argv)
    environ = os.environ if environ is None else environ
    out = out or sys.stdout
    if torch is None and (args.command in ('plan', 'mmcv') or (
            args.command == 'constraints' and not args.torch)):
        torch = _import_torch()
    try:
        if args.command == 'found':
            found = installed_mmcv(args.cache)
            if found:
                print(*found, file=out)
        elif args.command == 'constraints':
            version = (parse_version(args.torch) if args.torch
                       else build.torch_version(torch))
            name, text = merged_constraints(args.repo, version)
            Path(args.out).write_text(text)
            print(name, file=out)
        elif args.command == 'plan':
            print(*build.plan(args.cache, torch, environ), file=out)
        elif args.command == 'mend':
            print(build.mend_source(args.root, args.version), file=out)
        else:
            problem = mmcv_problem(args.version, torch)
            if problem:
                raise Refusal(*problem)
    except Refusal as refusal:
        what, fix = (refusal.args + ('', ))[:2]
        print(what, file=out)
        if fix:
            print(fix, file=out)
        return refusal.status
    return 0


if __name__ == '__main__':
    sys.exit(main())
