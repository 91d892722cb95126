# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
"""tools/install.sh's decisions that depend on torch, the GPU and CUDA
(tools/_install_checks.py), driven with a stubbed ``torch.cuda``: no GPU, no
network, no build. The pinned sets: constraints.txt, and its NumPy 1.x
overrides for torch 2.1.x / 2.2.x (constraints-torch2.1.txt)."""
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from helpers import REPO, import_tool

checks = import_tool('tools/_install_checks.py')
build = checks.build   # tools/_mmcv_build.py, as the checks import it

PY = f'py{sys.version_info[0]}{sys.version_info[1]}'


def fake_torch(version='2.1.2+cu121', cuda='12.1', gpu=True,
               capabilities=((9, 0), )):
    """Just what the decisions read of torch."""
    return SimpleNamespace(
        __version__=version, version=SimpleNamespace(cuda=cuda),
        cuda=SimpleNamespace(
            is_available=lambda: gpu,
            device_count=lambda: len(capabilities),
            get_device_capability=lambda i=0: capabilities[i]))


class StubTorch:
    """The real torch, except that ``torch.cuda`` says a GPU is there and
    tensors made on 'cuda' are made on ``cuda_as`` instead: 'cpu' plays a GPU
    that every kernel runs on, 'meta' one that mmcv's compiled ops have no
    kernels for (what a CPU-ops mmcv meets on a real GPU); ``broken`` plays
    a GPU torch cannot use (no driver)."""

    def __init__(self, cuda_as='cpu', broken=False, version='2.1.2+cu121',
                 cuda='12.1'):
        import torch
        self._torch, self._cuda_as, self._broken = torch, cuda_as, broken
        self.__version__ = version
        self.version = SimpleNamespace(cuda=cuda)
        self.cuda = SimpleNamespace(
            is_available=lambda: True, device_count=lambda: 1,
            get_device_capability=lambda i=0: (9, 0),
            synchronize=lambda: None)

    def _on(self, kwargs):
        if kwargs.get('device') == 'cuda':
            if self._broken:
                raise RuntimeError('Found no NVIDIA driver on your system.')
            kwargs['device'] = self._cuda_as
        return kwargs

    def tensor(self, *args, **kwargs):
        return self._torch.tensor(*args, **self._on(kwargs))

    def ones(self, *args, **kwargs):
        return self._torch.ones(*args, **self._on(kwargs))

    def __getattr__(self, name):
        return getattr(self._torch, name)


def fake_ops(cuda_kernels):
    """mmcv.ops as the checks use it; without ``cuda_kernels`` it fails on
    tensors of a stubbed CUDA device as mmcv 2.1.0's dispatcher does."""
    import torch

    def check(tensor, name):
        if tensor.device.type == 'meta' and not cuda_kernels:
            raise RuntimeError(f'{name}_impl: implementation for device '
                               'cuda:0 not found.')

    def nms(boxes, scores, threshold):
        check(boxes, 'nms')
        return None, torch.tensor([0])

    class RoIAlign:
        def __init__(self, size, scale):
            pass

        def __call__(self, features, rois):
            check(features, 'roi_align_forward')
            return torch.ones(1, 1, 2, 2)

    return SimpleNamespace(nms=nms, RoIAlign=RoIAlign)


def fake_nvcc(tmp_path, release, headers=True):
    """A CUDA_HOME whose bin/nvcc reports ``release``, with the library
    headers ATen includes or (``headers=False``) without."""
    home = tmp_path / f'cuda-{release}'
    (home / 'bin').mkdir(parents=True)
    if headers:
        (home / 'include').mkdir()
        for header in build.ATEN_CUDA_HEADERS:
            (home / 'include' / header).write_text('')
    nvcc = home / 'bin' / 'nvcc'
    nvcc.write_text('#!/bin/sh\necho "nvcc: NVIDIA (R) Cuda compiler driver"\n'
                    f'echo "Cuda compilation tools, release {release}, '
                    f'V{release}.105"\n')
    nvcc.chmod(0o755)
    return str(home)


def cached_wheel(cache, key):
    folder = Path(cache) / 'wheels' / key
    folder.mkdir(parents=True)
    wheel = folder / 'mmcv-2.1.0-cp311-cp311-linux_x86_64.whl'
    wheel.write_bytes(b'')
    return str(wheel)


@pytest.fixture
def no_default_cuda(monkeypatch, tmp_path):
    """No /usr/local/cuda, whatever this machine has."""
    monkeypatch.setattr(build, 'DEFAULT_CUDA_HOME', str(tmp_path / 'none'))


# ----------------------------------------------------------- the pinned sets


def test_torch_floor_matches_pyproject():
    text = (REPO / 'pyproject.toml').read_text()
    floor = re.search(r'"torch>=([\d.]+)"', text)
    assert floor, 'pyproject.toml dependencies: no torch floor'
    assert checks.parse_version(floor[1])[:2] == checks.TORCH_FLOOR
    matrix = (REPO / '.dev_scripts' / 'check_install_matrix.sh').read_text()
    assert '"3.11 2.1.2"' in matrix  # the oldest torch tested: a row


@pytest.mark.parametrize('version, numpy1', [
    ('2.1.2+cu121', True), ('2.1.0', True), ('2.2.2+cpu', True),
    ('2.3.0', False), ('2.13.0+cpu', False)])
def test_constraints_for_torch(version, numpy1):
    name, text = checks.merged_constraints(REPO, checks.parse_version(version))
    numpy = [line for line in text.splitlines() if line.startswith('numpy==')]
    assert numpy
    for line in numpy:
        major = int(line.split('==')[1].split('.')[0])
        assert (major == 1) == numpy1, line
    assert ('constraints-torch2.1.txt' in name) == numpy1


def test_torch21_overrides_only_replace():
    """Each override replaces a package that constraints.txt pins (the
    whole tree stays pinned); the merged set keeps every other line."""
    base = checks.read_pins(REPO / 'constraints.txt')
    overrides = checks.read_pins(REPO / 'constraints-torch2.1.txt')
    assert {n for n, _ in overrides} <= {n for n, _ in base}
    assert {n for n, _ in overrides} >= {'numpy'}
    assert all('==' in line for _, line in overrides)
    _, text = checks.merged_constraints(REPO, (2, 1, 2))
    merged = set(text.splitlines())
    replaced = {n for n, _ in overrides}
    assert {line for n, line in base if n not in replaced} <= merged
    assert {line for _, line in overrides} <= merged
    assert len(merged) == len([n for n, _ in base if n not in replaced]) + \
        len(overrides)


def test_older_torch_is_refused():
    with pytest.raises(build.Refusal) as refusal:
        checks.merged_constraints(REPO, (2, 0, 1))
    what, fix = refusal.value.args
    assert 'torch 2.0.1' in what and '2.1' in what
    assert 'torch >= 2.1' in fix


def test_constraints_command_without_torch(tmp_path, capsys):
    out = tmp_path / 'c.txt'
    assert checks.main(['constraints', str(out), '--torch', '2.1.2']) == 0
    assert 'numpy==1.26.4' in out.read_text().splitlines()
    assert checks.main(['constraints', str(out), '--torch', '1.13.1']) == \
        build.REFUSED
    assert 'older than 2.1' in capsys.readouterr().out


# ----------------------------------------------------------- the wheel cache


def test_cpu_torch_keeps_the_old_cache_key(tmp_path):
    torch = fake_torch('2.13.0+cpu', None, gpu=False)
    wheel = cached_wheel(tmp_path, f'torch2.13.0-cpu-{PY}')
    assert build.plan(tmp_path, torch, {}) == ('use', wheel)


def test_cuda_torch_without_gpu_builds_cpu_ops(tmp_path, no_default_cuda):
    torch = fake_torch(gpu=False)
    assert build.plan(tmp_path, torch, {}, which=lambda _: None) == (
        'build', str(tmp_path / 'wheels' / f'torch2.1.2-cu121-{PY}-cpuops'),
        'cpu')
    wheel = cached_wheel(tmp_path, f'torch2.1.2-cu121-{PY}-cpuops')
    assert build.plan(tmp_path, torch, {}) == ('use', wheel)


def test_cpu_ops_wheel_never_used_for_gpu(tmp_path, no_default_cuda):
    """A GPU is visible: neither the CPU-ops wheel of the same torch nor one
    cached by an older install.sh (folder without an ops suffix) is used;
    without nvcc the plan stops before anything is installed, with the fix."""
    cached_wheel(tmp_path, f'torch2.1.2-cu121-{PY}-cpuops')
    cached_wheel(tmp_path, f'torch2.1.2-cu121-{PY}')
    torch = fake_torch()
    with pytest.raises(build.Refusal) as refusal:
        build.plan(tmp_path, torch, {}, which=lambda _: None)
    what, fix = refusal.value.args
    assert 'sees a GPU' in what and 'no CUDA compiler' in what
    assert 'nothing was installed' in what
    assert 'CUDA_HOME' in fix and 'nvcc 12.1' in fix
    assert ('pip install mmcv==2.1.0 -f https://download.openmmlab.com/mmcv/'
            'dist/cu121/torch2.1.0/index.html') in fix

    home = fake_nvcc(tmp_path, '12.1')
    assert build.plan(tmp_path, torch, {'CUDA_HOME': home}) == (
        'build',
        str(tmp_path / 'wheels' / f'torch2.1.2-cu121-{PY}-cudaops-sm90'),
        'cuda')


def test_cuda_ops_wheel_is_used_without_nvcc(tmp_path, no_default_cuda):
    wheel = cached_wheel(tmp_path, f'torch2.1.2-cu121-{PY}-cudaops-sm90')
    assert build.plan(tmp_path, fake_torch(), {},
                       which=lambda _: None) == ('use', wheel)
    # built for another GPU: not used
    other = fake_torch(capabilities=((8, 0), ))
    with pytest.raises(build.Refusal):
        build.plan(tmp_path, other, {}, which=lambda _: None)


def test_nvcc_found_like_torch_does(tmp_path, no_default_cuda):
    home = fake_nvcc(tmp_path, '12.4')
    on_path = lambda name: os.path.join(home, 'bin', name)  # noqa: E731
    assert build.find_cuda_home({}, which=on_path) == home
    assert build.find_cuda_home({'CUDA_PATH': 'x'}, which=on_path) == 'x'
    assert build.find_cuda_home({}, which=lambda _: None) is None
    assert build.nvcc_release(home) == '12.4'
    assert build.nvcc_release(str(tmp_path / 'nowhere')) is None
    # another minor release of torch's CUDA major version builds
    assert build.plan(tmp_path, fake_torch(), {}, which=on_path)[2] == 'cuda'


def test_library_headers_from_torchs_pip_packages(tmp_path):
    """A toolkit of nvcc and the runtime alone: the library headers come
    from the pip packages beside torch (as PyTorch's wheels bring them), or
    the plan stops before anything is installed."""
    home = fake_nvcc(tmp_path, '13.0', headers=False)
    site = tmp_path / 'site-packages'
    (site / 'torch').mkdir(parents=True)
    torch = fake_torch('2.13.0+cu130', '13.0')
    torch.__file__ = str(site / 'torch' / '__init__.py')
    with pytest.raises(build.Refusal) as refusal:
        build.plan(tmp_path, torch, {'CUDA_HOME': home})
    assert 'lacks headers that ATen includes' in refusal.value.args[0]
    for folder, header in (('cu13', 'cusparse.h'), ('cu13', 'cublas_v2.h'),
                           ('cu13', 'cublasLt.h'),
                           ('cu13', 'cuda_runtime_api.h'),
                           ('cusolver', 'cusolverDn.h')):
        (site / 'nvidia' / folder / 'include').mkdir(parents=True,
                                                     exist_ok=True)
        (site / 'nvidia' / folder / 'include' / header).write_text('')
    action, folder, ops, includes = build.plan(tmp_path, torch,
                                                {'CUDA_HOME': home})
    assert (action, ops) == ('build', 'cuda')
    assert includes.split(':') == [str(site / 'nvidia' / 'cu13' / 'include'),
                                   str(site / 'nvidia' / 'cusolver' /
                                       'include')]


def test_nvcc_of_another_cuda_major_is_refused(tmp_path):
    home = fake_nvcc(tmp_path, '11.8')
    with pytest.raises(build.Refusal) as refusal:
        build.plan(tmp_path, fake_torch(), {'CUDA_HOME': home})
    assert 'CUDA 11.8' in refusal.value.args[0]
    assert 'CUDA 12.1' in refusal.value.args[0]


def test_no_prebuilt_wheel_for_newer_torch(tmp_path):
    torch = fake_torch('2.13.0+cu130', '13.0')
    with pytest.raises(build.Refusal) as refusal:
        build.plan(tmp_path, torch, {'CUDA_HOME': str(tmp_path)})
    what, fix = refusal.value.args
    assert 'does not run' in what
    assert 'download.openmmlab.com' not in fix
    assert 'none for torch 2.13 cu130' in fix


def test_force_cuda_builds_cuda_ops_without_gpu(tmp_path):
    home = fake_nvcc(tmp_path, '12.1')
    env = {'CUDA_HOME': home, 'FORCE_CUDA': '1',
           'TORCH_CUDA_ARCH_LIST': '8.0;9.0'}
    assert build.plan(tmp_path, fake_torch(gpu=False), env) == (
        'build',
        str(tmp_path / 'wheels' / f'torch2.1.2-cu121-{PY}-cudaops-8.0+9.0'),
        'cuda')
    # FORCE_CUDA means nothing for a CPU-only torch
    assert build.plan(tmp_path, fake_torch('2.13.0+cpu', None, gpu=False),
                       env)[2] == 'cpu'


# ------------------------------------------------------- the source release

# get_version() as mmcv 2.1.0's setup.py has it: it reads __version__ back
# from locals() after exec(), which Python 3.13 (PEP 667) no longer sees
MMCV_SETUP = """\
def get_version():
    version_file = 'mmcv/version.py'
    with open(version_file, encoding='utf-8') as f:
        exec(compile(f.read(), version_file, 'exec'))
    return locals()['__version__']
"""


def unpacked_mmcv(root, version='2.1.0', setup=MMCV_SETUP):
    """An mmcv source release as ``pip download --no-clean`` leaves it."""
    tree = root / f'pip-unpack-{version}' / f'mmcv-{version}'
    (tree / 'mmcv').mkdir(parents=True)
    (tree / 'mmcv' / 'version.py').write_text(f"__version__ = '{version}'\n")
    (tree / 'setup.py').write_text(setup)
    return tree


def test_source_release_mended_to_run_on_every_python(tmp_path,
                                                      monkeypatch):
    unpacked_mmcv(tmp_path, '2.2.0')   # another release beside it
    tree = unpacked_mmcv(tmp_path)
    out = io.StringIO()
    assert checks.main(['mend', str(tmp_path), '2.1.0'], out=out) == 0
    assert out.getvalue() == f'{tree}\n'
    mended = (tree / 'setup.py').read_text()
    assert mended == MMCV_SETUP.replace(
        "        exec(compile(f.read(), version_file, 'exec'))\n"
        "    return locals()['__version__']",
        "        scope = {}\n"
        "        exec(compile(f.read(), version_file, 'exec'), scope)\n"
        "    return scope['__version__']")
    scope = {}
    exec(mended, scope)
    monkeypatch.chdir(tree)
    assert scope['get_version']() == '2.1.0'   # on this Python too


def test_source_release_not_mended_blindly(tmp_path):
    out = io.StringIO()
    assert checks.main(['mend', str(tmp_path), '2.1.0'], out=out) == \
        build.REFUSED
    assert out.getvalue() == (f'expected one unpacked mmcv 2.1.0 release '
                              f'under {tmp_path}, found 0\n')
    tree = unpacked_mmcv(tmp_path, setup=MMCV_SETUP.replace('locals()',
                                                            'vars()'))
    with pytest.raises(build.Refusal, match='get_version.. is not the one'):
        build.mend_source(tmp_path, '2.1.0')
    assert 'vars()' in (tree / 'setup.py').read_text()   # left as it was


# ----------------------------------------------------------- mmcv's ops


def test_mmcv_ops_checked_on_cpu_only_without_gpu():
    torch = StubTorch()
    torch.cuda.is_available = lambda: False
    ops = fake_ops(cuda_kernels=False)
    assert checks.mmcv_problem('2.1.0', torch, lambda: ops) is None


def test_mmcv_ops_checked_on_cuda_where_torch_sees_a_gpu():
    ok = checks.mmcv_problem('2.1.0', StubTorch('meta'),
                             lambda: fake_ops(cuda_kernels=True))
    assert ok is None
    what, fix = checks.mmcv_problem('2.1.0', StubTorch('meta'),
                                    lambda: fake_ops(cuda_kernels=False))
    assert 'do not run on the GPU' in what
    assert 'implementation for device cuda:0 not found' in what
    assert 'CUDA_HOME' in fix and 'cu121/torch2.1.0' in fix


def test_gpu_torch_cannot_use_is_told_apart():
    with pytest.raises(build.GpuUnusable) as refusal:
        checks.mmcv_problem('2.1.0', StubTorch(broken=True),
                            lambda: fake_ops(cuda_kernels=True))
    what, fix = refusal.value.args
    assert 'cannot run on it' in what and 'NVIDIA driver' in what
    assert 'nvidia-smi' in fix
    assert refusal.value.status == build.GPU_UNUSABLE


def test_installed_mmcv_read_from_metadata(tmp_path):
    """This machine's mmcv (the suite runs with one), from its metadata:
    not from the cache given here, so 'other'."""
    import mmcv
    out = io.StringIO()
    assert checks.main(['found', str(tmp_path)], out=out) == 0
    assert out.getvalue() == f'mmcv {mmcv.__version__} other\n'


def test_real_mmcv_without_cuda_kernels_is_refused():
    """This machine's mmcv, its kernels meeting a device they do not cover
    (what a CPU-ops build meets on a GPU): its dispatcher's error is
    reported as missing CUDA ops, with the fix."""
    pytest.importorskip('mmcv._ext')
    import mmcv
    if mmcv.__version__ != '2.1.0':
        pytest.skip(f'mmcv {mmcv.__version__}')
    torch = StubTorch()
    torch.cuda.is_available = lambda: False
    assert checks.mmcv_problem('2.1.0', torch) is None
    what, fix = checks.mmcv_problem('2.1.0', StubTorch('meta'))
    assert 'do not run on the GPU' in what, what
    assert 'CUDA_HOME' in fix
    what, _ = checks.mmcv_problem('2.0.1', torch)
    assert what == 'mmcv 2.1.0 is installed'


# ----------------------------------------------------------- install.sh itself


STUB_TORCH = """\
import os
__version__ = os.environ['STUB_TORCH']


class version:
    cuda = os.environ.get('STUB_CUDA') or None


class _Tensor:  # what the mmcv check does with tensors
    def __init__(self, device, shape):
        self.device_type, self.shape = device, tuple(shape)

    def __len__(self):
        return self.shape[0]

    def __float__(self):
        return 4.0

    def add_(self, other):
        return self

    float = sum = cpu = lambda self: self


def _on(device):
    if device == 'cuda' and os.environ.get('STUB_GPU_BROKEN') == '1':
        raise RuntimeError('Found no NVIDIA driver on your system.')
    return device


def tensor(data, device='cpu'):
    return _Tensor(_on(device), (len(data), ))


def ones(*shape, device='cpu'):
    return _Tensor(_on(device), shape)


class cuda:
    is_available = staticmethod(lambda: os.environ.get('STUB_GPU') == '1')
    device_count = staticmethod(lambda: 1)
    get_device_capability = staticmethod(lambda i=0: (9, 0))
    synchronize = staticmethod(lambda: None)
"""
STUB_MMCV_OPS = """\
import os
import torch


def _check(tensor, name):
    if tensor.device_type == 'cuda' and \\
            os.environ.get('STUB_MMCV_CUDA') != '1':
        raise RuntimeError(f'{name}_impl: implementation for device cuda:0 '
                           'not found.')


def nms(boxes, scores, threshold):
    _check(boxes, 'nms')
    return None, torch.tensor([0], device=boxes.device_type)


class RoIAlign:
    def __init__(self, size, scale):
        pass

    def __call__(self, features, rois):
        _check(features, 'roi_align_forward')
        return torch.ones(1, 1, 2, 2, device=features.device_type)
"""


@pytest.fixture
def stub_python(tmp_path):
    """An interpreter for install.sh that has nothing installed but a stub
    torch (``STUB_TORCH`` version, ``STUB_CUDA``, ``STUB_GPU=1``,
    ``STUB_GPU_BROKEN=1``), and whose pip logs its arguments to pip.log: it
    fails `pip download` (nothing is fetched) and succeeds otherwise,
    installing nothing."""
    site = tmp_path / 'site'
    (site / 'torch').mkdir(parents=True)
    (site / 'torch' / '__init__.py').write_text(STUB_TORCH)
    python = tmp_path / 'python'
    python.write_text(
        '#!/bin/sh\n'
        'if [ "$1" = -m ] && [ "$2" = pip ]; then\n'
        f'  echo "$*" >> {tmp_path}/pip.log\n'
        '  [ "$3" = download ] && exit 1\n'
        '  exit 0\n'
        'fi\n'
        f'PYTHONPATH={site} exec {sys.executable} -S "$@"\n')
    python.chmod(0o755)
    return python


def stub_mmcv(tmp_path, wheel=None):
    """An installed mmcv 2.1.0 in the stub interpreter, from ``wheel`` (a
    path: as install.sh installs from its cache) or from elsewhere; its ops
    run on the CPU, and on the GPU where ``STUB_MMCV_CUDA=1``."""
    site = tmp_path / 'site'
    (site / 'mmcv').mkdir()
    (site / 'mmcv' / '__init__.py').write_text("__version__ = '2.1.0'\n")
    (site / 'mmcv' / '_ext.py').write_text('')
    (site / 'mmcv' / 'ops.py').write_text(STUB_MMCV_OPS)
    info = site / 'mmcv-2.1.0.dist-info'
    info.mkdir()
    (info / 'METADATA').write_text(
        'Metadata-Version: 2.1\nName: mmcv\nVersion: 2.1.0\n')
    if wheel:
        (info / 'direct_url.json').write_text(
            json.dumps({'url': f'file://{wheel}', 'archive_info': {}}))


def install(stub_python, tmp_path, **env):
    environ = dict(os.environ, PYTHON=str(stub_python),
                   MMREPVIT_CACHE=str(tmp_path / 'cache'),
                   PATH='/usr/bin:/bin', **env)
    for name in ('CUDA_PATH', 'FORCE_CUDA', 'TORCH_CUDA_ARCH_LIST',
                 'MMREPVIT_CONSTRAINTS'):
        environ.pop(name, None)
    done = subprocess.run(['bash', str(REPO / 'tools' / 'install.sh')],
                          env=environ, capture_output=True, text=True,
                          timeout=120)
    log = tmp_path / 'pip.log'
    pip = log.read_text().splitlines() if log.exists() else []
    return done.returncode, done.stdout + done.stderr, pip


needs_bash = pytest.mark.skipif(shutil.which('bash') is None,
                                reason='needs bash')


@needs_bash
def test_install_stops_on_gpu_without_nvcc(stub_python, tmp_path):
    cached_wheel(tmp_path / 'cache', f'torch2.1.2-cu121-{PY}-cpuops')
    rc, out, pip = install(stub_python, tmp_path, STUB_TORCH='2.1.2+cu121',
                           STUB_CUDA='12.1', STUB_GPU='1',
                           CUDA_HOME=str(tmp_path / 'no-cuda'))
    assert rc == 1, out
    assert 'constraints-torch2.1.txt' in out  # the NumPy 1.x set
    assert 'needs its CUDA ops' in out and 'nothing was installed' in out
    assert 'export CUDA_HOME=/usr/local/cuda-12.1' in out
    assert 'cu121/torch2.1.0/index.html' in out
    assert pip == []  # nothing installed


@needs_bash
def test_install_builds_rather_than_use_cpu_ops_wheel(stub_python, tmp_path):
    cpu = cached_wheel(tmp_path / 'cache', f'torch2.1.2-cu121-{PY}-cpuops')
    rc, out, pip = install(stub_python, tmp_path, STUB_TORCH='2.1.2+cu121',
                           STUB_CUDA='12.1', STUB_GPU='1',
                           CUDA_HOME=fake_nvcc(tmp_path, '12.1'))
    assert rc == 1, out  # the stub pip downloads nothing
    assert 'with compiled CPU and CUDA ops' in out, out
    assert f'torch2.1.2-cu121-{PY}-cudaops-sm90' in out
    assert 'could not download the mmcv 2.1.0 source' in out
    assert 'using cached' not in out
    assert not any(cpu in call or '.whl' in call for call in pip), pip
    assert any('setuptools>=60,<70' in call for call in pip)


@needs_bash
def test_install_uses_cached_cuda_ops_wheel(stub_python, tmp_path):
    cached_wheel(tmp_path / 'cache', f'torch2.1.2-cu121-{PY}-cpuops')
    cuda = cached_wheel(tmp_path / 'cache',
                        f'torch2.1.2-cu121-{PY}-cudaops-sm90')
    rc, out, pip = install(stub_python, tmp_path, STUB_TORCH='2.1.2+cu121',
                           STUB_CUDA='12.1', STUB_GPU='1',
                           CUDA_HOME=str(tmp_path / 'no-cuda'))
    assert f'using cached mmcv wheel {cuda}' in out, out
    assert [call for call in pip if '.whl' in call][0].endswith(cuda)
    # the stub has no mmcv to import after that
    assert rc == 1 and 'mmcv installed but mmcv does not import' in out


@needs_bash
def test_install_refuses_torch_below_floor(stub_python, tmp_path):
    rc, out, pip = install(stub_python, tmp_path, STUB_TORCH='2.0.1+cu117',
                           STUB_CUDA='11.7', STUB_GPU='1')
    assert rc == 1 and 'older than 2.1' in out, out
    assert pip == []


@needs_bash
def test_install_stops_on_mmcv_without_cuda_ops(stub_python, tmp_path):
    """An mmcv 2.1.0 the script did not install, whose ops run on the CPU
    only, on a machine whose torch sees a GPU: stopped with the fix."""
    stub_mmcv(tmp_path)
    rc, out, pip = install(stub_python, tmp_path, STUB_TORCH='2.1.2+cu121',
                           STUB_CUDA='12.1', STUB_GPU='1')
    assert rc == 1, out
    assert 'mmcv 2.1.0 is installed but its compiled ops do not run on the ' \
        'GPU' in out
    assert 'nms_impl: implementation for device cuda:0 not found' in out
    assert 'export CUDA_HOME=/usr/local/cuda-12.1' in out
    assert 'cu121/torch2.1.0/index.html' in out
    assert 'pip uninstall mmcv' in out
    assert pip == []


@needs_bash
def test_install_replaces_its_cpu_ops_mmcv_only_if_it_can(stub_python,
                                                          tmp_path):
    """The CPU-ops mmcv this script installed from its cache, now on a GPU
    machine: to be replaced, but without nvcc nothing is installed."""
    stub_mmcv(tmp_path, cached_wheel(tmp_path / 'cache',
                                     f'torch2.1.2-cu121-{PY}-cpuops'))
    rc, out, pip = install(stub_python, tmp_path, STUB_TORCH='2.1.2+cu121',
                           STUB_CUDA='12.1', STUB_GPU='1',
                           CUDA_HOME=str(tmp_path / 'no-cuda'))
    assert rc == 1, out
    assert 'replacing it with mmcv 2.1.0 for the current torch and GPU' in out
    assert 'nothing was installed' in out and 'CUDA_HOME' in out
    assert pip == []


@needs_bash
def test_install_keeps_mmcv_with_cuda_ops(stub_python, tmp_path):
    stub_mmcv(tmp_path)
    rc, out, pip = install(stub_python, tmp_path, STUB_TORCH='2.1.2+cu121',
                           STUB_CUDA='12.1', STUB_GPU='1', STUB_MMCV_CUDA='1')
    assert 'mmcv 2.1.0 with compiled ops already installed: keeping it' in out
    assert not any('.whl' in c or 'setuptools' in c for c in pip), pip
    # the stub pip installs no requirements, so the script ends there
    assert rc == 1 and 'dependencies installed but do not import' in out


@needs_bash
def test_install_stops_when_torch_cannot_use_its_gpu(stub_python, tmp_path):
    stub_mmcv(tmp_path)
    rc, out, pip = install(stub_python, tmp_path, STUB_TORCH='2.1.2+cu121',
                           STUB_CUDA='12.1', STUB_GPU='1', STUB_GPU_BROKEN='1')
    assert rc == 1, out
    assert 'sees a GPU but cannot run on it' in out and 'nvidia-smi' in out
    assert pip == []
