#!/usr/bin/env python
# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
"""The prepared GPU check (maintainers): on a fresh CUDA machine, in about 8
minutes on one H100, one Markdown report of

  1. install: tools/install.sh builds mmcv 2.1.0 with its CUDA ops (into an
     empty wheel cache, so that the build is timed), or --mmcv prebuilt
     installs OpenMMLab's wheel first (torch 2.1 with CUDA 11.8 / 12.1 only);
  2. synthetic COCO-format images (tools/dataset_converters/make_demo_coco.py);
  3. training configs/det/repvit_m1_1_maskrcnn.py for --iters iterations at
     the paper's batch (2 images of 1333x800 per GPU), fp32 and AMP: s/iter
     and peak memory beside the official run's (0.212 s/iter, 5,942 MB: RTX
     4090, torch 2.0.1, official log repvit_m1_1_coco.json);
  4. python -m pytest tests/test_cuda.py;
  5. tools/analysis_tools/benchmark.py CONFIG --split --device cuda
     --cuda-amp for the det and seg paper configs.

Each step runs the project's command-line tools in a subprocess, with a
time limit (--budget, for all steps together); a step that fails or runs out
of time is reported with its log's tail, and the report is written whatever
happens. Logs, configs and data stay in --work.

    .dev_scripts/gpu_check.sh [--out REPORT.md] [--work DIR] [--budget 480]
        [--iters 50] [--mmcv build|prebuilt] [--wheelhouse DIR]
        [--skip STEP ...] [--dry-run]

A machine without network (the device machines of this workplace) needs the
wheels the project adds to its image, prepared beforehand on one with PyPI:

    .dev_scripts/gpu_check.sh --prepare-wheelhouse .whl --for-python 3.12
    # then, there: .dev_scripts/gpu_check.sh --wheelhouse .whl

With --wheelhouse, pip installs from that folder only, and every package
already installed is kept at its version (a constraints file of what is
installed, the wheelhouse's versions taking precedence); an image with
opencv-python-headless gets a metadata-only stand-in for opencv-python (which
mmcv and MMEngine require; both only import cv2).
"""
import argparse
import base64
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DET_CONFIG = 'configs/det/repvit_m1_1_maskrcnn.py'
SEG_CONFIG = 'configs/seg/repvit_m1_1_fpn_ade20k.py'
# The official RepViT-M1.1 Mask R-CNN run (THU-MIG/RepViT, detection log
# repvit_m1_1_coco.json): 8 GPUs x 2 images, RTX 4090, torch 2.0.1.
OFFICIAL = dict(s_per_iter=0.212, memory_mb=5942,
                where='RTX 4090, torch 2.0.1, official log '
                'repvit_m1_1_coco.json')
IMAGE_SIZE = (1333, 800)  # (width, height): the paper's largest input
BATCH = 2
STEPS = ('install', 'data', 'train', 'train-amp', 'test-cuda', 'bench-det',
         'bench-seg')
MIN_STEP_SECONDS = 10  # a step with less time left is skipped
MMCV_VERSION = '2.1.0'
# --prepare-wheelhouse: besides requirements.txt's pins, what the device
# image lacks (mmcv's, MMEngine's, MMDetection's and MMSegmentation's pure
# dependencies), at constraints.txt's versions, and setuptools < 70 (mmcv's
# setup.py and MMEngine need pkg_resources).
WHEELHOUSE_EXTRA = ('addict', 'termcolor', 'yapf', 'platformdirs',
                    'terminaltables', 'shapely', 'prettytable', 'wcwidth',
                    'pycocotools')
SETUPTOOLS = 'setuptools==69.5.1'


# ----------------------------------------------------------- arguments


def positive(kind):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or value <= 0:
            raise argparse.ArgumentTypeError(
                f'expected a number above zero, got {text!r}')
        return value
    return parse


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog='.dev_scripts/gpu_check.sh', description=__doc__.split('\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='\n'.join(__doc__.splitlines()[1:]))
    parser.add_argument('--work', default='work_dirs/gpu_check',
                        help='logs, configs, data and the wheel cache '
                        '(default: %(default)s)')
    parser.add_argument('--out', help='the report (default: WORK/'
                        'gpu_check.md)')
    parser.add_argument('--python', default=sys.executable,
                        help='the interpreter to install into and run the '
                        'tools with (default: this one)')
    parser.add_argument('--budget', type=positive(float), default=480,
                        help='seconds for all the steps together '
                        '(default: %(default)s)')
    parser.add_argument('--iters', type=positive(int), default=50,
                        help='training iterations per run (default: '
                        '%(default)s)')
    parser.add_argument('--warmup-iters', type=int, default=10,
                        help='first iterations left out of s/iter (default: '
                        '%(default)s; a multiple of the log interval, 10)')
    parser.add_argument('--mmcv', choices=('build', 'prebuilt'),
                        default='build', help="build: tools/install.sh "
                        "builds mmcv with CUDA ops in an empty cache, timed "
                        "(default); prebuilt: OpenMMLab's wheel for this "
                        'torch first (torch 2.1 + cu118/cu121), then '
                        'tools/install.sh (which keeps it)')
    parser.add_argument('--wheelhouse', help='install from this folder only '
                        '(no network); see --prepare-wheelhouse')
    parser.add_argument('--skip', nargs='+', choices=STEPS, default=[],
                        metavar='STEP', help=f'steps not to run: '
                        f'{", ".join(STEPS)}')
    parser.add_argument('--bench-args', default='--rounds 1 '
                        '--min-run-time 0.25', help='added to each '
                        'benchmark.py command (default: %(default)r)')
    parser.add_argument('--commit', help='the commit under test, for the '
                        'report where the tree has no .git (default: git '
                        'rev-parse HEAD)')
    parser.add_argument('--dry-run', action='store_true',
                        help='write the report with the commands each step '
                        'would run, and run none (no GPU needed)')
    parser.add_argument('--prepare-wheelhouse', metavar='DIR',
                        help='download the wheels for --wheelhouse into DIR '
                        'and stop (needs PyPI; no GPU)')
    parser.add_argument('--for-python', default='3.12',
                        help='with --prepare-wheelhouse: the Python of the '
                        'GPU machine (default: %(default)s)')
    args = parser.parse_args(argv)
    if args.warmup_iters < 0 or args.warmup_iters >= args.iters:
        parser.error(f'--warmup-iters must be in [0, --iters), got '
                     f'{args.warmup_iters} with --iters {args.iters}')
    if not re.fullmatch(r'3\.\d+', args.for_python):
        parser.error(f'--for-python takes 3.N, got {args.for_python!r}')
    args.work = Path(args.work).resolve()
    args.out = Path(args.out).resolve() if args.out else \
        args.work / 'gpu_check.md'
    if args.wheelhouse:
        args.wheelhouse = Path(args.wheelhouse).resolve()
        if not args.prepare_wheelhouse and not args.wheelhouse.is_dir():
            parser.error(f'--wheelhouse {args.wheelhouse}: no such folder')
    return args


# ----------------------------------------------------------- steps


class Step:
    """One command of the check, its time limit, and what came of it."""

    def __init__(self, name, title, cmd, cap, env=None, needs=()):
        self.name, self.title, self.cmd, self.cap = name, title, cmd, cap
        self.env = env or {}
        self.needs = needs  # steps that must have passed
        self.status = 'not run'
        self.seconds = None
        self.log = None
        self.result = {}

    @property
    def ok(self):
        return self.status == 'ok'

    def command_line(self):
        env = ' '.join(f'{k}={shlex.quote(str(v))}'
                       for k, v in self.env.items()
                       if k != 'PYTHONUNBUFFERED')
        cmd = ' '.join(shlex.quote(str(c)) for c in self.cmd)
        return f'{env} {cmd}'.strip()


def synthetic_config(base, data_root, classes, iters, warmup):
    """A config file that trains ``base`` for ``iters`` iterations on the
    synthetic images, every one resized to 1333x800, 2 per batch, with
    random weights (nothing is downloaded), no validation and no
    checkpoint; s/iter and memory logged every 10 iterations."""
    width, height = IMAGE_SIZE
    interval = 10 if warmup % 10 == 0 and iters % 10 == 0 else 1
    root = str(data_root).rstrip('/') + '/'
    return f"""# Written by .dev_scripts/gpu_check.py: {base} for {iters}
# iterations on synthetic COCO-format images (make_demo_coco.py), each resized
# to {width}x{height} (the paper's batches: 2 images of at most 1333x800 per
# GPU), random weights (timing only: nothing is downloaded), no validation.
_base_ = [{str(REPO / base)!r}]

data_root = {root!r}
classes = {tuple(classes)!r}
model = dict(backbone=dict(init_cfg=None))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale={IMAGE_SIZE!r}, keep_ratio=False),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
train_dataloader = dict(
    batch_size={BATCH},
    num_workers=4,
    persistent_workers=True,
    dataset=dict(
        data_root=data_root,
        metainfo=dict(classes=classes),
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img='train/'),
        filter_cfg=dict(filter_empty_gt=True, min_size=8),
        pipeline=train_pipeline))
val_dataloader = dict(
    dataset=dict(
        data_root=data_root,
        metainfo=dict(classes=classes),
        ann_file='annotations/instances_val.json',
        data_prefix=dict(img='val/')))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator
train_cfg = dict(
    _delete_=True, type='IterBasedTrainLoop', max_iters={iters},
    val_begin={iters + 1}, val_interval={iters + 1})  # never validates
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0,
         end=500)
]
default_hooks = dict(
    logger=dict(interval={interval}),
    checkpoint=dict(by_epoch=False, interval={iters + 1}, save_last=False))
log_processor = dict(by_epoch=False, window_size={interval})
"""


def training_numbers(work_dir, warmup):
    """s/iter, data s/iter (means over the logged iterations after
    ``warmup``), peak memory (MB, the largest logged) and the last loss,
    from MMEngine's scalars.json in ``work_dir``; {} if there is none."""
    logs = sorted(Path(work_dir).glob('*/vis_data/scalars.json'))
    if not logs:
        return {}
    records = [json.loads(line) for line in logs[-1].read_text().splitlines()
               if line.strip()]
    records = [r for r in records if 'time' in r and 'iter' in r]
    if not records:
        return {}
    timed = [r for r in records if r['iter'] > warmup] or records
    mean = lambda key: (sum(r[key] for r in timed) /  # noqa: E731
                        len(timed)) if all(key in r for r in timed) else None
    memory = [r['memory'] for r in records if 'memory' in r]
    return dict(s_per_iter=mean('time'), data_s_per_iter=mean('data_time'),
                memory_mb=max(memory) if memory else None,
                loss=records[-1].get('loss'), iters=records[-1]['iter'])


def pytest_summary(text):
    found = [line.strip(' =') for line in text.splitlines()
             if re.search(r'\d+ (passed|failed|error|skipped)', line)]
    return found[-1] if found else None


def install_numbers(text):
    """What tools/install.sh did about mmcv, from its output."""
    text = re.sub(r'\x1b\[[0-9;]*m', '', text)
    result = {}
    built = re.search(r'built mmcv (\S+) in (\d+) min (\d+) s \((\d+) jobs\)',
                      text)
    if built:
        result['mmcv'] = (f'built in {built[2]} min {built[3]} s '
                          f'({built[4]} jobs)')
        result['build_seconds'] = int(built[2]) * 60 + int(built[3])
    elif 'using cached mmcv wheel' in text:
        result['mmcv'] = 'from the wheel cache (not built)'
    elif 'already installed: keeping it' in text:
        result['mmcv'] = 'kept (already installed, ops working)'
    ops = re.search(r'building mmcv \S+ with compiled (CPU and CUDA ops|ops)',
                    text)
    if ops:
        result['ops'] = ops[1]
    ready = re.search(r'ready: (.*)', text)
    if ready:
        result['ready'] = ready[1].strip()
    failed = re.search(r'FAILED: (.*)', text)
    if failed:
        result['failed'] = failed[1].strip()
    return result


def plan_steps(args, classes=('circle', 'triangle', 'square', 'star')):
    """The steps, in the order they run."""
    py, work = args.python, args.work
    install_env = {'PYTHON': py, 'MMREPVIT_CACHE': work / 'mmcv-cache',
                   'MMCV_BUILD_JOBS': os.cpu_count() or 2}
    if args.wheelhouse:
        install_env.update(PIP_NO_INDEX='1', PIP_FIND_LINKS=' '.join(
            map(str, (args.wheelhouse, work / 'stubs'))),
            MMREPVIT_CONSTRAINTS=work / 'offline-constraints.txt')
    install_cmd = ['bash', 'tools/install.sh']
    if args.mmcv == 'prebuilt':
        install_cmd = ['bash', '-c', 'set -e; url=$("$PYTHON" '
                       '.dev_scripts/gpu_check.py --prebuilt-url); '
                       f'"$PYTHON" -m pip install mmcv=={MMCV_VERSION} -f '
                       '"$url"; bash tools/install.sh']
    data = work / 'data' / 'coco'
    bench = shlex.split(args.bench_args)
    steps = [
        Step('install', 'tools/install.sh (mmcv with CUDA ops)', install_cmd,
             cap=min(360, args.budget), env=install_env),
        Step('data', 'synthetic COCO-format images',
             [py, 'tools/dataset_converters/make_demo_coco.py', '--out', data,
              '--num-train', 16, '--num-val', 2, '--size', IMAGE_SIZE[1]],
             cap=60),
        Step('train', f'training, fp32, {args.iters} iterations',
             [py, 'tools/train.py', work / 'configs' / 'maskrcnn_m1_1.py',
              '--work-dir', work / 'train'], cap=120,
             needs=('install', 'data')),
        Step('train-amp', f'training, AMP, {args.iters} iterations',
             [py, 'tools/train.py', work / 'configs' / 'maskrcnn_m1_1.py',
              '--work-dir', work / 'train-amp', '--amp'], cap=120,
             needs=('install', 'data')),
        Step('test-cuda', 'tests/test_cuda.py',
             [py, '-m', 'pytest', 'tests/test_cuda.py', '-q',
              '-p', 'no:cacheprovider'], cap=90, needs=('install', )),
        Step('bench-det', f'benchmark.py {DET_CONFIG}',
             [py, 'tools/analysis_tools/benchmark.py', DET_CONFIG, '--split',
              '--device', 'cuda', '--cuda-amp', *bench,
              '--out', work / 'bench-det.md'], cap=90, needs=('install', )),
        Step('bench-seg', f'benchmark.py {SEG_CONFIG}',
             [py, 'tools/analysis_tools/benchmark.py', SEG_CONFIG, '--split',
              '--device', 'cuda', '--cuda-amp', *bench,
              '--out', work / 'bench-seg.md'], cap=90, needs=('install', )),
    ]
    for step in steps:
        step.env.setdefault('PYTHONUNBUFFERED', '1')
    return steps


def run_step(step, deadline, logs):
    """Run ``step`` within its cap and the time left before ``deadline``;
    its output goes to logs/<name>.log."""
    left = deadline - time.monotonic()
    if left < MIN_STEP_SECONDS:
        step.status = f'skipped: {max(0, int(left))} s of the budget left'
        return
    limit = min(step.cap, left)
    step.log = logs / f'{step.name}.log'
    env = dict(os.environ, **{k: str(v) for k, v in step.env.items()})
    start = time.monotonic()
    with open(step.log, 'w') as log:
        log.write(f'$ {step.command_line()}\n')
        log.flush()
        proc = subprocess.Popen([str(c) for c in step.cmd], cwd=REPO,
                                env=env, stdout=log,
                                stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            rc = proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # dataloader workers too
            proc.wait()
            rc = None
    step.seconds = time.monotonic() - start
    step.status = 'ok' if rc == 0 else (
        f'timed out after {limit:.0f} s' if rc is None else
        f'failed (exit {rc})')


def tail(path, lines=25):
    if not path or not Path(path).exists():
        return ''
    text = re.sub(r'\x1b\[[0-9;]*m', '', Path(path).read_text(
        errors='replace'))
    return '\n'.join(text.splitlines()[-lines:])


# ----------------------------------------------------------- the report


def fmt(value, spec, suffix=''):
    return '-' if value is None else f'{value:{spec}}{suffix}'


def summary_of(step):
    r = step.result
    if step.name == 'install':
        parts = [r.get('mmcv'), r.get('ops') and f"ops: {r['ops']}"]
        return '; '.join(p for p in parts if p) or r.get('failed', '')
    if step.name.startswith('train') and r.get('s_per_iter') is not None:
        return (f"{r['s_per_iter']:.3f} s/iter, "
                f"{fmt(r.get('memory_mb'), ',.0f', ' MB')} peak")
    if step.name in ('test-cuda', ) or step.name.startswith('bench'):
        return r.get('summary', '')
    return r.get('summary', '')


def render_report(info, steps, args):
    """The report: the machine, a table of the steps, the training numbers
    beside the official run's, the benchmark tables and the tails of the
    logs of the steps that did not pass."""
    by_name = {s.name: s for s in steps}
    total = sum(s.seconds or 0 for s in steps)
    out = [f"# GPU check of mmrepvit: {info.get('gpu', 'no GPU')}", '',
           f"{info.get('date', '')}, commit {info.get('commit', 'unknown')}; "
           f"{'dry run (nothing was run); ' if args.dry_run else ''}"
           f'all steps {total:.0f} s of a {args.budget:.0f} s budget.', '',
           '| | |', '|---|---|']
    for key in ('gpu', 'driver', 'torch', 'nvcc', 'python', 'cpus'):
        if info.get(key):
            out.append(f'| {key} | {info[key]} |')
    out += ['', '## Steps', '', '| step | result | seconds | summary |',
            '|---|---|---|---|']
    for s in steps:
        out.append(f'| {s.title} | {s.status} | {fmt(s.seconds, ".0f")} | '
                   f'{summary_of(s)} |')

    out += ['', '## Training: Mask R-CNN + RepViT-M1.1, '
            f'{BATCH} images of {IMAGE_SIZE[0]}x{IMAGE_SIZE[1]} per GPU', '',
            f'`{DET_CONFIG}` on synthetic COCO-format images (make_demo_coco.'
            'py shapes, each resized to 1333x800), random weights, one GPU; '
            f's/iter: MMEngine\'s logged iteration time, mean over iterations '
            f'{args.warmup_iters + 1}-{args.iters}; memory: '
            'torch.cuda.max_memory_allocated, the largest logged (as the '
            'official log\'s "memory").', '',
            '| run | s/iter | data s/iter | peak memory (MB) | last loss |',
            '|---|---|---|---|---|',
            f"| official ({OFFICIAL['where']}) | {OFFICIAL['s_per_iter']:.3f}"
            f" | - | {OFFICIAL['memory_mb']:,} | - |"]
    for name, label in (('train', 'fp32'), ('train-amp', 'AMP')):
        s = by_name.get(name)
        if s is None:
            continue
        r = s.result
        if r.get('s_per_iter') is None:
            out.append(f'| this GPU, {label} | {s.status} | - | - | - |')
            continue
        ratio = r['s_per_iter'] / OFFICIAL['s_per_iter']
        out.append(
            f"| this GPU, {label} | {r['s_per_iter']:.3f} "
            f"({ratio:.2f}x official) | {fmt(r.get('data_s_per_iter'), '.3f')}"
            f" | {fmt(r.get('memory_mb'), ',.0f')} | "
            f"{fmt(r.get('loss'), '.3f')} |")

    for name in ('bench-det', 'bench-seg'):
        s = by_name.get(name)
        if s is None:
            continue
        out += ['', f'## {s.title}', '', f'`{s.command_line()}`', '']
        table = s.result.get('table')
        out += [table.strip() if table else f'({s.status})']

    failed = [s for s in steps if s.status not in ('ok', 'not run')
              and not s.status.startswith('skipped')]
    if failed:
        out += ['', '## Logs of the steps that did not pass']
        for s in failed:
            out += ['', f'### {s.title}: {s.status}', '',
                    f'`{s.command_line()}` (log: {s.log})', '', '```',
                    tail(s.log), '```']
    out += ['', '## Commands', '']
    out += [f'- {s.name}: `{s.command_line()}`' for s in steps]
    return '\n'.join(out) + '\n'


def machine_info(python, probe=True):
    """Date, commit and (``probe``) the GPU, driver, torch, nvcc, Python
    and CPU count."""
    info = {'date': time.strftime('%Y-%m-%d %H:%M %Z')}
    try:
        commit = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'],
                                cwd=REPO, capture_output=True, text=True)
        dirty = subprocess.run(['git', 'status', '--porcelain'], cwd=REPO,
                               capture_output=True, text=True).stdout
        if commit.returncode == 0:
            info['commit'] = commit.stdout.strip() + (
                ' (with uncommitted changes)' if dirty.strip() else '')
    except OSError:
        pass
    if not probe:
        return info
    info['cpus'] = str(os.cpu_count())
    queries = {
        'gpu': ['nvidia-smi', '--query-gpu=name,memory.total',
                '--format=csv,noheader'],
        'driver': ['nvidia-smi', '--query-gpu=driver_version',
                   '--format=csv,noheader'],
        'nvcc': ['nvcc', '--version'],
        'torch': [python, '-c', 'import torch; print(torch.__version__, '
                  '"CUDA", torch.version.cuda, "GPU:", '
                  'torch.cuda.is_available())'],
        'python': [python, '-c', 'import sys; print(sys.version.split()[0])'],
    }
    for key, cmd in queries.items():
        try:
            done = subprocess.run(cmd, capture_output=True, text=True,
                                  timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            continue
        text = done.stdout.strip()
        if done.returncode == 0 and text:
            if key == 'nvcc':
                found = re.search(r'release [\d.]+, V[\d.]+', text)
                text = found[0] if found else text.splitlines()[-1]
            info[key] = text.splitlines()[0] if key == 'gpu' else text
    return info


# ----------------------------------------------------------- offline installs


def installed_versions(python):
    """{normalised name: version} of what ``python`` has installed."""
    code = ('import json; from importlib.metadata import distributions; '
            'print(json.dumps({d.metadata["Name"]: d.version '
            'for d in distributions() if d.metadata["Name"]}))')
    out = subprocess.run([python, '-c', code], capture_output=True,
                         text=True, check=True).stdout
    return {norm(k): v for k, v in json.loads(out).items()}


def norm(name):
    return re.sub(r'[-_.]+', '-', name).lower()


def wheelhouse_versions(folder):
    """{normalised name: version} of the wheels and sdists in ``folder``."""
    found = {}
    for path in sorted(Path(folder).iterdir()):
        if path.suffix == '.whl':
            name, version = path.name.split('-')[:2]
        elif path.name.endswith('.tar.gz'):
            name, _, version = path.name[:-len('.tar.gz')].rpartition('-')
        else:
            continue
        found[norm(name)] = version
    return found


def offline_constraints(installed, wheels):
    """Constraints that keep every installed package at its version, except
    those the wheelhouse brings (which win); mmcv is left to
    tools/install.sh, which builds it."""
    pins = dict(installed)
    pins.update(wheels)
    for name in ('mmcv', 'mmrepvit'):
        pins.pop(name, None)
    valid = re.compile(r'^[0-9]+(\.[0-9]+)*([a-z]+[0-9]*)?(\.post[0-9]+)?'
                       r'(\.dev[0-9]+)?(\+[a-z0-9.]+)?$', re.I)
    return ''.join(f'{name}=={version}\n' for name, version in sorted(
        pins.items()) if valid.match(version))


def stand_in_wheel(folder, name, version, reason):
    """A metadata-only wheel: ``name`` ``version`` that installs no files
    (pip then counts the requirement on it as met)."""
    dist = f"{name.replace('-', '_')}-{version}"
    files = {
        f'{dist}.dist-info/METADATA':
            f'Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n'
            f'Summary: stand-in: {reason}\n',
        f'{dist}.dist-info/WHEEL':
            'Wheel-Version: 1.0\nGenerator: mmrepvit-gpu-check\n'
            'Root-Is-Purelib: true\nTag: py3-none-any\n',
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(
            hashlib.sha256(text.encode()).digest()).rstrip(b'=').decode()
        record.append(f'{path},sha256={digest},{len(text.encode())}')
    record.append(f'{dist}.dist-info/RECORD,,')
    files[f'{dist}.dist-info/RECORD'] = '\n'.join(record) + '\n'
    Path(folder).mkdir(parents=True, exist_ok=True)
    wheel = Path(folder) / f'{dist}-py3-none-any.whl'
    with zipfile.ZipFile(wheel, 'w') as zf:
        for path, text in files.items():
            zf.writestr(path, text)
    return wheel


def prepare_offline(args):
    """The constraints and stand-ins for an install from --wheelhouse."""
    installed = installed_versions(args.python)
    wheels = wheelhouse_versions(args.wheelhouse)
    stubs = args.work / 'stubs'
    shutil.rmtree(stubs, ignore_errors=True)
    stubs.mkdir(parents=True)
    if 'opencv-python' not in installed and 'opencv-python' not in wheels \
            and 'opencv-python-headless' in installed:
        version = installed['opencv-python-headless']
        stand_in_wheel(stubs, 'opencv-python', version,
                       f'cv2 comes from opencv-python-headless {version}')
        wheels['opencv-python'] = version
    (args.work / 'offline-constraints.txt').write_text(
        offline_constraints(installed, wheels))


def requirement_pins(repo=REPO):
    """name==version lines of requirements.txt."""
    pins = []
    for line in (Path(repo) / 'requirements.txt').read_text().splitlines():
        text = line.split('#')[0].strip()
        if '==' in text:
            pins.append(text)
    return pins


def constraint_pin(name, repo=REPO, python='3.12'):
    """constraints.txt's pin of ``name`` for Python ``python``."""
    minor = int(python.split('.')[1])
    for line in (Path(repo) / 'constraints.txt').read_text().splitlines():
        text = line.split('#')[0].strip()
        req, _, marker = text.partition(';')
        if norm(req.split('==')[0].strip()) != norm(name):
            continue
        if marker and ('< "3.11"' in marker) == (minor >= 11):
            continue
        return req.strip()
    raise KeyError(f'{name} is not pinned in constraints.txt')


def wheelhouse_list(repo=REPO, python='3.12'):
    """What --prepare-wheelhouse downloads (besides the mmcv source)."""
    pins = requirement_pins(repo)
    names = {norm(p.split('==')[0]) for p in pins}
    pins += [constraint_pin(n, repo, python) for n in WHEELHOUSE_EXTRA
             if norm(n) not in names]
    return pins + [SETUPTOOLS]


def prepare_wheelhouse(folder, python_version):
    """Download the wheels (for ``python_version`` on manylinux x86-64) and
    the mmcv source release into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    pins = wheelhouse_list(REPO, python_version)
    platforms = [f'--platform={p}' for p in (
        'manylinux_2_28_x86_64', 'manylinux_2_27_x86_64',
        'manylinux_2_17_x86_64', 'manylinux2014_x86_64',
        'manylinux1_x86_64')]
    cmd = [sys.executable, '-m', 'pip', 'download', '--no-deps',
           '--only-binary=:all:', f'--python-version={python_version}',
           '--implementation=cp', *platforms, '-d', str(folder), *pins]
    print('$', ' '.join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    # mmcv's source release: pip keeps its unpacked tree (its metadata step
    # may fail here: mmcv's setup.py needs torch), which is packed again
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, '-m', 'pip', 'download', '-q',
                        '--no-deps', '--no-binary=:all:', '--no-clean',
                        '-d', tmp, f'mmcv=={MMCV_VERSION}'],
                       env=dict(os.environ, TMPDIR=tmp),
                       capture_output=True)
        trees = [p.parents[1] for p in Path(tmp).glob('*/*/mmcv/version.py')
                 if (p.parents[1] / 'setup.py').exists()]
        if len(trees) != 1:
            sys.exit(f'could not download the mmcv {MMCV_VERSION} source')
        with tarfile.open(folder / f'mmcv-{MMCV_VERSION}.tar.gz', 'w:gz') \
                as tar:
            tar.add(trees[0], arcname=f'mmcv-{MMCV_VERSION}')
    size = sum(p.stat().st_size for p in folder.iterdir()) / 2**20
    print(f'{len(list(folder.iterdir()))} files, {size:.1f} MiB in {folder}')


def prebuilt_url():
    """OpenMMLab's mmcv 2.1.0 wheel index for this torch and CUDA."""
    import torch
    major, minor = (int(v) for v in torch.__version__.split('.')[:2])
    cuda = 'cu' + (torch.version.cuda or '').replace('.', '')
    if (major, minor) != (2, 1) or cuda not in ('cu118', 'cu121'):
        sys.exit(f'OpenMMLab publishes no mmcv {MMCV_VERSION} wheel for '
                 f'torch {torch.__version__} (only torch 2.1 with cu118 or '
                 'cu121): use --mmcv build')
    return (f'https://download.openmmlab.com/mmcv/dist/{cuda}/'
            f'torch{major}.{minor}.0/index.html')


# ----------------------------------------------------------- main


def annotate(step, args):
    """Read what a finished step produced into step.result."""
    text = Path(step.log).read_text(errors='replace') if step.log and \
        Path(step.log).exists() else ''
    if step.name == 'install':
        step.result = install_numbers(text)
    elif step.name in ('train', 'train-amp'):
        step.result = training_numbers(args.work / step.name,
                                       args.warmup_iters)
    elif step.name == 'test-cuda':
        step.result = {'summary': pytest_summary(text) or ''}
    elif step.name.startswith('bench'):
        out = args.work / f'{step.name}.md'
        if out.exists():
            step.result = {'table': out.read_text(), 'summary': 'tables below'}
    elif step.name == 'data':
        step.result = {'summary': '; '.join(
            line.strip() for line in text.splitlines()
            if re.match(r'(train|val): \d+ images', line))}


def dataset_classes(data_root):
    ann = Path(data_root) / 'annotations' / 'instances_train.json'
    return [c['name'] for c in sorted(json.loads(ann.read_text())
                                      ['categories'],
                                      key=lambda c: c['id'])]


def main(argv=None):
    if argv is None and sys.argv[1:] == ['--prebuilt-url']:
        print(prebuilt_url())
        return 0
    args = parse_args(argv)
    if args.prepare_wheelhouse:
        prepare_wheelhouse(args.prepare_wheelhouse, args.for_python)
        return 0
    logs = args.work / 'logs'
    logs.mkdir(parents=True, exist_ok=True)
    (args.work / 'configs').mkdir(exist_ok=True)
    steps = plan_steps(args)
    info = machine_info(args.python, probe=not args.dry_run)
    if args.commit:
        info['commit'] = args.commit
    if not args.dry_run and 'GPU: False' in info.get('torch', ''):
        sys.exit(f"{args.python}: {info['torch']}: this check needs a CUDA "
                 'GPU (--dry-run shows what it would run)')
    if args.dry_run:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(render_report(info, steps, args))
        print(args.out.read_text())
        return 0
    if 'install' not in args.skip:
        shutil.rmtree(args.work / 'mmcv-cache', ignore_errors=True)
        if args.wheelhouse:
            prepare_offline(args)
    deadline = time.monotonic() + args.budget
    passed = set()
    for step in steps:
        failed_needs = [n for n in step.needs
                        if n not in passed and n not in args.skip]
        if step.name in args.skip:
            step.status = 'skipped (--skip)'
        elif failed_needs:
            step.status = f'skipped: {", ".join(failed_needs)} did not pass'
        else:
            print(f'[gpu_check] {step.title} ...', flush=True)
            try:
                if step.name.startswith('train'):
                    data = args.work / 'data' / 'coco'
                    (args.work / 'configs' / 'maskrcnn_m1_1.py').write_text(
                        synthetic_config(DET_CONFIG, data,
                                         dataset_classes(data), args.iters,
                                         args.warmup_iters))
                    shutil.rmtree(args.work / step.name, ignore_errors=True)
                run_step(step, deadline, logs)
                annotate(step, args)
            except Exception as error:  # the report is written regardless
                step.status = f'failed: {type(error).__name__}: {error}'
            print(f'[gpu_check] {step.title}: {step.status} '
                  f'({fmt(step.seconds, ".0f")} s) {summary_of(step)}',
                  flush=True)
        if step.ok:
            passed.add(step.name)
        args.out.write_text(render_report(info, steps, args))
    print(f'[gpu_check] report: {args.out}')
    return 0 if all(s.ok or s.status.startswith('skipped (--skip)')
                    for s in steps) else 1


if __name__ == '__main__':
    sys.exit(main())
