# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
"""Where tools/install.sh gets mmcv's wheel from: a cached wheel built for
this torch with the ops this machine needs, or a build from the source
release (with CUDA ops where torch sees a GPU, which needs nvcc of torch's
CUDA major version and the CUDA library headers ATen includes). Driven by
tools/_install_checks.py (``plan``, ``mend``); standard library only.
"""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

MMCV_VERSION = '2.1.0'
# OpenMMLab's prebuilt mmcv 2.1.0 wheels (download.openmmlab.com), per torch
# minor release: the CUDA versions they are built for.
PREBUILT_MMCV = {(2, 1): ('cu118', 'cu121')}
PREBUILT_URL = ('https://download.openmmlab.com/mmcv/dist/{cuda}/'
                'torch{major}.{minor}.0/index.html')
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


def cuda_tag(torch):
    """'cu121' for a CUDA 12.1 build of torch, 'cpu' for a CPU-only one."""
    cuda = getattr(torch.version, 'cuda', None)
    return 'cu' + cuda.replace('.', '') if cuda else 'cpu'


def torch_tag(torch):
    """torch, CUDA and Python version: what a compiled mmcv is tied to."""
    base = '.'.join(map(str, torch_version(torch)))
    return (f'torch{base}-{cuda_tag(torch)}-'
            f'py{sys.version_info[0]}{sys.version_info[1]}')



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


def wheels_folder(cache):
    """Where install.sh keeps the mmcv wheels it builds, in ``cache``
    (one folder per :func:`cache_key`)."""
    return Path(cache) / 'wheels'


def plan(cache, torch, environ, which=shutil.which, run=subprocess.run):
    """('use', wheel), ('build', wheel folder, 'cpu') or ('build', wheel
    folder, 'cuda', include folders to add, ':'-joined, if any); raises
    Refusal when CUDA ops are needed and nvcc is missing, does not match
    torch's CUDA, or lacks the library headers ATen needs."""
    folder = wheels_folder(cache) / cache_key(torch, environ)
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


# mmcv 2.1.0's get_version() reads __version__ back from locals() after
# exec(); PEP 667 (Python 3.13) made locals() a snapshot, so its setup.py
# fails there. exec() in a namespace of its own works on every Python.
_GET_VERSION = ("        exec(compile(f.read(), version_file, 'exec'))\n"
                "    return locals()['__version__']")
_GET_VERSION_MENDED = (
    "        scope = {}\n"
    "        exec(compile(f.read(), version_file, 'exec'), scope)\n"
    "    return scope['__version__']")


def mend_source(root, version):
    """The mmcv ``version`` source tree that ``pip download --no-binary
    :all: --no-clean`` left unpacked under ``root``, its setup.py's
    get_version() mended (nothing else in the release changes); raises
    Refusal if there is not exactly one such tree, or its get_version() is
    not the one this mends."""
    trees = [p.parents[1] for p in Path(root).glob('*/*/mmcv/version.py')
             if (p.parents[1] / 'setup.py').is_file() and re.search(
                 rf"__version__ = '{re.escape(version)}'", p.read_text())]
    if len(trees) != 1:
        raise Refusal(f'expected one unpacked mmcv {version} release under '
                      f'{root}, found {len(trees)}')
    setup = trees[0] / 'setup.py'
    text = setup.read_text()
    if _GET_VERSION not in text:
        raise Refusal(f'{setup}: get_version() is not the one this script '
                      f'mends')
    setup.write_text(text.replace(_GET_VERSION, _GET_VERSION_MENDED))
    return str(trees[0])
