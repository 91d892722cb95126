# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
"""The decisions of tools/install.sh that depend on torch, the GPU and CUDA,
in one place that the tests drive with a stubbed ``torch`` (no GPU needed).
install.sh runs it with the interpreter it installs into::

    python tools/_install_checks.py constraints OUT [--torch VERSION]
        writes the constraints for this torch (or VERSION) to OUT and prints
        which set it is; refuses a torch older than the floor
    python tools/_install_checks.py plan CACHE
        where the mmcv wheel comes from: prints "use WHEEL" (a cached wheel
        with the ops this machine needs) or "build DIR cuda|cpu"; refuses
        (before anything is installed) when CUDA ops are needed but cannot
        be built here
    python tools/_install_checks.py mmcv VERSION
        whether mmcv VERSION's compiled ops run: RoIAlign and NMS on CPU
        tensors, and on CUDA tensors too when torch sees a GPU

A refusal exits 3 (4: torch sees a GPU but cannot use it) and prints what
is wrong on the first line, what to do on the next ones. Standard library
only, besides torch and mmcv (imported when needed), so that it runs before
anything is installed.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# The oldest torch this project is tested with is 2.1.2 (the torch 2.1.2 row
# of .dev_scripts/check_install_matrix.sh), the newest 2.13.0; pyproject.toml
# requires torch >= 2.1 (tests/test_install.py keeps the two equal).
TORCH_FLOOR = (2, 1)
# PyTorch's wheels before 2.3 are built against NumPy 1.x and cannot use
# NumPy 2; constraints-torch2.1.txt pins the NumPy 1.x stack for them.
NUMPY2_SINCE = (2, 3)
# OpenMMLab's prebuilt mmcv 2.1.0 wheels (download.openmmlab.com), per torch
# minor release >= the floor: the CUDA versions they are built for.
PREBUILT_MMCV = {(2, 1): ('cu118', 'cu121')}
PREBUILT_URL = ('https://download.openmmlab.com/mmcv/dist/{cuda}/'
                'torch{major}.{minor}.0/index.html')
MMCV_VERSION = '2.1.0'
DEFAULT_CUDA_HOME = '/usr/local/cuda'  # torch's last resort, as here
# The CUDA headers that mmcv's C++ and CUDA sources need through ATen's
# (ATen/cuda/CUDAContext.h): the runtime's and the libraries'.
ATEN_CUDA_HEADERS = ('cuda_runtime_api.h', 'cusparse.h', 'cublas_v2.h',
                     'cublasLt.h', 'cusolverDn.h')


REFUSED, GPU_UNUSABLE = 3, 4  # exit statuses (a crash exits 1)


class Refusal(Exception):
    """What is wrong (first argument) and what to do (second)."""

    status = REFUSED


class GpuUnusable(Refusal):
    status = GPU_UNUSABLE


def torch_version(torch):
    """torch.__version__ '2.1.2+cu121' -> (2, 1, 2)."""
    return tuple(int(v) for v in
                 re.findall(r'\d+', torch.__version__.split('+')[0])[:3])


def parse_version(text):
    return tuple(int(v) for v in re.findall(r'\d+', text)[:3])


def cuda_tag(torch):
    """'cu121' for a CUDA 12.1 build of torch, 'cpu' for a CPU-only one."""
    cuda = getattr(torch.version, 'cuda', None)
    return 'cu' + cuda.replace('.', '') if cuda else 'cpu'


def torch_tag(torch):
    """torch, CUDA and Python version: what a compiled mmcv is tied to."""
    base = '.'.join(map(str, torch_version(torch)))
    return (f'torch{base}-{cuda_tag(torch)}-'
            f'py{sys.version_info[0]}{sys.version_info[1]}')


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


# ----------------------------------------------------------- CUDA


def find_cuda_home(environ, which=shutil.which):
    """The CUDA toolkit torch.utils.cpp_extension builds with: $CUDA_HOME
    (or $CUDA_PATH), else the one whose nvcc is on the PATH, else
    /usr/local/cuda if it exists; None if none."""
    home = environ.get('CUDA_HOME') or environ.get('CUDA_PATH')
    if home:
        return home
    nvcc = which('nvcc')
    if nvcc:
        return os.path.dirname(os.path.dirname(nvcc))  # no realpath: torch's
    return DEFAULT_CUDA_HOME if os.path.exists(DEFAULT_CUDA_HOME) else None


def nvcc_release(cuda_home, run=subprocess.run):
    """'12.1' from ``$cuda_home/bin/nvcc --version``; None if it does not
    run."""
    nvcc = os.path.join(cuda_home, 'bin', 'nvcc')
    try:
        out = run([nvcc, '--version'], capture_output=True, text=True,
                  timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    found = re.search(r'release (\d+\.\d+)', out)
    return found[1] if found else None


def library_includes(home, torch):
    """Folders to add to the include path (CPATH) for ATen's CUDA headers:
    [] where the toolkit at ``home`` has them all; else the include folders
    of the pip packages of PyTorch's CUDA libraries (nvidia-cusparse-cu12,
    nvidia-cu13 ... beside torch) that hold the missing ones, as where
    the toolkit is nvcc and the runtime alone. None if some are nowhere."""
    missing = [h for h in ATEN_CUDA_HEADERS
               if not os.path.isfile(os.path.join(home, 'include', h))]
    if not missing:
        return []
    where = getattr(torch, '__file__', None)
    site = Path(where).resolve().parents[1] if where else None
    found = []
    for header in missing:
        hits = sorted(site.glob(f'nvidia/*/include/{header}')) if site \
            else []
        if not hits:
            return None
        if str(hits[0].parent) not in found:
            found.append(str(hits[0].parent))
    return found


def cuda_fix(torch):
    """What to do to get mmcv's CUDA ops for this torch."""
    cuda = torch.version.cuda
    major, minor = torch_version(torch)[:2]
    lines = [f'either install the CUDA {cuda} toolkit (nvcc {cuda} and its '
             'library headers; torch.version.cuda; the same major version '
             'at least), point CUDA_HOME at it (export '
             f'CUDA_HOME=/usr/local/cuda-{cuda}) and rerun tools/install.sh: '
             f'it then builds mmcv {MMCV_VERSION} with CUDA ops for this GPU']
    prebuilt = [c for c in PREBUILT_MMCV.get((major, minor), ())
                if c == cuda_tag(torch)]
    if prebuilt:
        url = PREBUILT_URL.format(cuda=prebuilt[0], major=major, minor=minor)
        lines.append(f"or install OpenMMLab's prebuilt wheel for torch "
                     f'{major}.{minor} + {prebuilt[0]}:\n'
                     f'    pip install mmcv=={MMCV_VERSION} -f {url}\n'
                     '  and rerun tools/install.sh (it keeps a working mmcv)')
    else:
        builds = ', '.join(
            f'torch {m}.{n} with {" or ".join(c)}'
            for (m, n), c in sorted(PREBUILT_MMCV.items()))
        lines.append(f'(OpenMMLab publishes prebuilt mmcv {MMCV_VERSION} '
                     f'wheels for {builds} only, none for torch '
                     f'{major}.{minor} {cuda_tag(torch)})')
    return '\n  '.join(lines)


def gpu_archs(torch, environ):
    """The GPU architectures the CUDA ops are built for, as torch's
    cpp_extension picks them: $TORCH_CUDA_ARCH_LIST, else the visible GPUs'
    ('sm90', 'sm80+sm90'), else torch's whole list ('all')."""
    listed = environ.get('TORCH_CUDA_ARCH_LIST')
    if listed:
        return re.sub(r'[^0-9A-Za-z.+]+', '+', listed).strip('+')
    if torch.cuda.is_available():
        caps = sorted({torch.cuda.get_device_capability(i)
                       for i in range(torch.cuda.device_count())})
        return '+'.join(f'sm{major}{minor}' for major, minor in caps)
    return 'all'


def wants_cuda_ops(torch, environ):
    """mmcv's setup.py builds CUDA ops when torch sees a GPU or
    FORCE_CUDA=1 (a CUDA torch on a build machine without a GPU)."""
    if not torch.version.cuda:
        return False
    return torch.cuda.is_available() or environ.get('FORCE_CUDA') == '1'


def cache_key(torch, environ):
    """The folder of the wheel cache for this torch and the ops it needs.
    A CUDA torch gets 'cpuops' or 'cudaops-<archs>' after its tag: a wheel
    built without CUDA ops (on a machine without a GPU, or by an older
    install.sh, whose folders had no such suffix) is never used where CUDA
    ops are needed."""
    tag = torch_tag(torch)
    if not torch.version.cuda:
        return tag
    if wants_cuda_ops(torch, environ):
        return f'{tag}-cudaops-{gpu_archs(torch, environ)}'
    return f'{tag}-cpuops'


def plan(cache, torch, environ, which=shutil.which, run=subprocess.run):
    """('use', wheel), ('build', wheel folder, 'cpu') or ('build', wheel
    folder, 'cuda', include folders to add, ':'-joined, if any); raises
    Refusal when CUDA ops are needed and nvcc is missing, does not match
    torch's CUDA, or lacks the library headers ATen needs."""
    folder = Path(cache) / 'wheels' / cache_key(torch, environ)
    wheels = sorted(folder.glob(f'mmcv-{MMCV_VERSION}-*.whl'))
    if wheels:
        return 'use', str(wheels[0])
    if not wants_cuda_ops(torch, environ):
        return 'build', str(folder), 'cpu'
    why = (f'torch {torch.__version__} sees a GPU' if torch.cuda.is_available()
           else 'FORCE_CUDA=1 is set') + \
        f', so mmcv {MMCV_VERSION} needs its CUDA ops, '
    home = find_cuda_home(environ, which)
    if home is None:
        raise Refusal(why + 'but no CUDA compiler was found (no CUDA_HOME, no '
                      'nvcc on the PATH, no /usr/local/cuda); nothing was '
                      'installed', cuda_fix(torch))
    release = nvcc_release(home, run)
    if release is None:
        raise Refusal(why + f'but {home}/bin/nvcc does not run (CUDA_HOME='
                      f'{home}); nothing was installed', cuda_fix(torch))
    if release.split('.')[0] != torch.version.cuda.split('.')[0]:
        raise Refusal(why + f'but {home}/bin/nvcc is CUDA {release} and '
                      f'torch is built with CUDA {torch.version.cuda} (torch '
                      'refuses to build extensions across CUDA major '
                      'versions); nothing was installed', cuda_fix(torch))
    includes = library_includes(home, torch)
    if includes is None:
        raise Refusal(why + f'but the CUDA toolkit at {home} lacks headers '
                      f'that ATen includes ({", ".join(ATEN_CUDA_HEADERS)}),'
                      ' and no pip package beside torch has them; nothing was'
                      ' installed', cuda_fix(torch))
    return ('build', str(folder), 'cuda') + \
        ((':'.join(includes), ) if includes else ())


# ----------------------------------------------------------- mmcv's ops


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
                f'{first_line(error)}', cuda_fix(torch))
    return None


# ----------------------------------------------------------- command line


def main(argv=None, torch=None, environ=None, out=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    sub = parser.add_subparsers(dest='command', required=True)
    con = sub.add_parser('constraints')
    con.add_argument('out')
    con.add_argument('--torch', help='this torch version instead of the '
                     'installed one (no torch needed)')
    con.add_argument('--repo', default=str(REPO))
    sub.add_parser('plan').add_argument('cache')
    sub.add_parser('mmcv').add_argument('version')
    args = parser.parse_args(argv)
    environ = os.environ if environ is None else environ
    out = out or sys.stdout
    if torch is None and not getattr(args, 'torch', None):
        import warnings
        with warnings.catch_warnings():  # e.g. torch without numpy yet
            warnings.simplefilter('ignore')
            import torch
    try:
        if args.command == 'constraints':
            version = (parse_version(args.torch) if args.torch
                       else torch_version(torch))
            name, text = merged_constraints(args.repo, version)
            Path(args.out).write_text(text)
            print(name, file=out)
        elif args.command == 'plan':
            print(*plan(args.cache, torch, environ), file=out)
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
