# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
"""Latency of models in several forms, measured side by side with
``torch.utils.benchmark`` (median and interquartile range; on CUDA the timer
synchronises the device).

Three ideas:

- A :class:`Subject` is a model to measure (a bare backbone, a detector or a
  segmentor) that can build a fresh copy of itself and example inputs.
- A *form* (:data:`FORMS`) is how a subject runs: as built ("training" form,
  in eval mode), fused (``deploy``), in channels_last memory format, under
  CUDA fp16 autocast, exported and run by onnxruntime... Each form is one
  small function of (model, inputs, run) that prepares them and returns the
  zero-argument callable that is timed, so another path is one more entry.
- The cases of one input size, batch size and thread count are measured in
  interleaved rounds (every case once per round), so that drift in the
  machine's load hits all of them alike; the rounds' samples are merged.
  Timing a model's backbone, backbone + neck and whole in the same rounds
  splits its time by part (:func:`split_table`).

:func:`cpu_peak` estimates the CPU's peak multiply-accumulate rate, to show
how close to the hardware each case gets.
"""
import multiprocessing
import os
import os.path as osp
import re
import resource
import subprocess
import tempfile
from dataclasses import dataclass
from functools import partial
from typing import (Any, Callable, Dict, List, Optional, Sequence, Tuple,
                    Union)

import torch
import torch.nn as nn
from torch.utils.benchmark import Measurement, Timer

from ..deploy import use_channels_last
from . import builders
from .complexity import count

Size = Tuple[int, int]


# ------------------------------------------------------------------ tasks
def _forward(model, x):
    with torch.no_grad():
        return model(x)


def _predict(model, data):
    with torch.no_grad():
        return model(**data, mode='predict')


def _features(model, data):
    with torch.no_grad():
        return model.extract_feat(data['inputs'])


def _backbone(model, data):
    with torch.no_grad():
        return model.backbone(data['inputs'])


def _train_step(model, data):
    torch.manual_seed(0)   # the same RoI sampling in every call
    loss, _ = model.parse_losses(model(**data, mode='loss'))
    loss.backward()
    model.zero_grad(set_to_none=True)


@dataclass(frozen=True)
class Task:
    """What one timed call does."""
    run: Callable[[nn.Module, Any], Any]
    training: bool   # model in training mode, inputs with ground truth
    description: str


TASKS = {
    'forward': Task(_forward, False, 'forward, eval mode, no grad'),
    'predict': Task(_predict, False,
                    "model(..., mode='predict'), eval, no grad"),
    'features': Task(_features, False,
                     'backbone + neck (extract_feat), eval, no grad'),
    'backbone': Task(_backbone, False,
                     "the config's backbone alone, eval, no grad"),
    'train': Task(_train_step, True, 'training step: loss + backward'),
}


# ------------------------------------------------------------------ forms
def channels_last(inputs):
    """The inputs (a tensor, or MMEngine's data dict) in channels_last."""
    if isinstance(inputs, torch.Tensor):
        return inputs.contiguous(memory_format=torch.channels_last)
    return dict(inputs, inputs=channels_last(inputs['inputs']))


def _as_built(model, inputs, run):
    return partial(run, model, inputs)


def _channels_last(model, inputs, run):
    if isinstance(inputs, torch.Tensor):  # a bare backbone
        model = model.to(memory_format=torch.channels_last)
        return partial(run, model, channels_last(inputs))
    # a detector/segmentor: backbone and neck only, as mmrepvit.deploy does
    # (mmcv's RoIAlign returns wrong values on channels_last features)
    return partial(run, use_channels_last(model), inputs)


def _cuda_fp16(make):
    """The form ``make`` under CUDA float16 autocast (None off CUDA)."""
    def form(model, inputs, run):
        if not next(model.parameters()).is_cuda:
            return None
        timed = make(model, inputs, run)

        def fn():
            with torch.autocast('cuda', dtype=torch.float16):
                return timed()
        return fn
    return form


#: What the onnxruntime form exports for each task (mmrepvit.deploy's parts);
#: a detector's predict is absent: the full Mask R-CNN needs MMDeploy.
_ONNX_PARTS = {_forward: 'backbone', _backbone: 'backbone',
               _features: 'features', _predict: 'segmentor'}


def _onnxruntime(model, inputs, run):
    """The deploy form exported to ONNX (:func:`mmrepvit.deploy.export_onnx`,
    parity-checked at this input's shape) and run by onnxruntime on the CPU
    with as many intra-op threads as torch uses. A segmentor's predict is
    its label map at the input size (logits, resize and arg-max in the
    graph); None where there is nothing to export (a detector's predict, a
    model without a RepViT, CUDA)."""
    from ..deploy import export_onnx, onnx_part, ort_session
    part = _ONNX_PARTS.get(run)
    if next(model.parameters()).is_cuda or part is None:
        return None
    try:
        onnx_part(model, part)
    except ValueError:
        return None
    x = inputs if isinstance(inputs, torch.Tensor) else inputs['inputs']
    x = x.contiguous().numpy()
    with tempfile.TemporaryDirectory() as tmp:
        path = osp.join(tmp, 'model.onnx')
        export_onnx(model, path, x.shape[2:], part=part,
                    labels=part == 'segmentor', check_shapes=[x.shape])
        # the session holds the graph; the file can go
        session = ort_session(path, threads=torch.get_num_threads())
    return partial(session.run, None, {'input': x})


@dataclass(frozen=True)
class Form:
    """A way to run a model: ``make(model, inputs, run)`` prepares the model
    and inputs (in place) and returns the callable that is timed, or None
    where the form does not apply. ``fused``: the runner fuses the model
    first (:func:`builders.to_deploy`); such forms are for inference only."""
    make: Callable[[nn.Module, Any, Callable], Optional[Callable[[], Any]]]
    fused: bool = False


FORMS: Dict[str, Form] = {
    'training': Form(_as_built),
    'channels_last': Form(_channels_last),
    'deploy': Form(_as_built, fused=True),
    'deploy+channels_last': Form(_channels_last, fused=True),
    # CUDA only: float16 autocast
    'deploy+fp16': Form(_cuda_fp16(_as_built), fused=True),
    'deploy+channels_last+fp16': Form(_cuda_fp16(_channels_last),
                                      fused=True),
    # CPU: the exported deploy form in onnxruntime
    'onnxruntime': Form(_onnxruntime, fused=True),
}
CUDA_AMP_FORMS = ('deploy+fp16', 'deploy+channels_last+fp16')


def unfused_name(form: str) -> str:
    """What a fused form amounts to on a model with nothing to fuse:
    'deploy+channels_last' -> 'channels_last', 'deploy' -> 'training'."""
    return form.replace('deploy+', '') if '+' in form else 'training'


# --------------------------------------------------------------- subjects
@dataclass
class Subject:
    """A model to measure: ``build()`` returns a fresh copy (seeded random
    weights, eval mode); ``inputs(model, batch, size, training)`` example
    inputs on the model's device, ready for the model (for a detector or
    segmentor: after its data preprocessor)."""
    name: str
    build: Callable[[], nn.Module]
    inputs: Callable[[nn.Module, int, Size, bool], Any]
    tasks: Tuple[str, ...]
    baseline: bool = False
    # a batch as the dataloader packs it, before the data preprocessor
    packed: Optional[Callable[[int, Size], Any]] = None


def arch_subject(arch: str) -> Subject:
    """The dense-prediction backbone of ``arch`` (four stage outputs)."""

    def inputs(model, batch, size, training):
        device = next(model.parameters()).device
        return torch.randn(batch, 3, *size,
                           generator=torch.Generator().manual_seed(0)).to(
                               device)

    return Subject(builders.display_name(arch),
                   partial(builders.build_backbone, arch), inputs,
                   ('forward', ), baseline=arch == builders.BASELINE)


def config_subject(cfg, name: Optional[str] = None,
                   baseline: bool = False) -> Subject:
    """The detector or segmentor of ``cfg``."""

    def inputs(model, batch, size, training):
        return model.data_preprocessor(
            builders.packed_batch(cfg, batch, size), training)

    return Subject(name or builders.model_name(cfg),
                   partial(builders.build_from_config, cfg), inputs,
                   ('predict', 'features', 'backbone', 'train'),
                   baseline=baseline,
                   packed=partial(builders.packed_batch, cfg))


@torch.no_grad()
def macs_of(model: nn.Module, inputs, task: str) -> Optional[int]:
    """MACs of one call of ``task`` (MMEngine's count; None for training
    steps)."""
    if task == 'forward':
        return count(model, (inputs, )).macs
    if task == 'backbone':
        return count(model.backbone, (inputs['inputs'], )).macs
    if task == 'features':
        with builders.features_mode(model):
            return count(model, (inputs['inputs'], )).macs
    if task == 'predict':
        with builders.tensor_mode(model, inputs['data_samples']):
            return count(model, (inputs['inputs'], )).macs
    return None


# -------------------------------------------------------------- CPU peak
@dataclass
class CpuPeak:
    """Peak fp32 multiply-accumulates per second of a CPU: cores x SIMD
    lanes x FMA units x clock, with 2 FMA units per core assumed (true of
    recent x86 server cores; some have 1, which halves the peak)."""
    model: str
    cores: int
    lanes: int
    ghz: float
    clock: str     # where the clock was read
    fma_units: int = 2

    def gmacs(self, threads: int) -> float:
        return min(threads, self.cores) * self.lanes * self.fma_units * \
            self.ghz

    def describe(self) -> str:
        isa = {16: 'AVX-512', 8: 'AVX2+FMA', 4: '128-bit SIMD'}[self.lanes]
        return (f'{self.model}: {self.cores} cores x {self.lanes} fp32 lanes '
                f'({isa}) x {self.fma_units} FMA units (assumed) x '
                f'{self.ghz:.2f} GHz ({self.clock}) = '
                f'{self.gmacs(self.cores):.0f} GMAC/s '
                f'({self.gmacs(1):.1f} per core)')


def _cpu_fields() -> Dict[str, str]:
    """lscpu's 'key: value' lines, completed by /proc/cpuinfo's first
    processor (lscpu's names win)."""
    try:
        text = subprocess.run(['lscpu'], capture_output=True, text=True,
                              env=dict(os.environ, LC_ALL='C'),
                              check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        text = ''
    fields = dict(re.findall(r'^([^:\n]+):\s*(.*)$', text, re.M))
    try:
        with open('/proc/cpuinfo') as f:
            first = f.read().split('\n\n')[0]
        for key, value in re.findall(r'^([^:\n]+?)\s*:\s*(.*)$', first,
                                     re.M):
            fields.setdefault({'model name': 'Model name',
                               'flags': 'Flags'}.get(key, key), value)
    except OSError:
        pass
    return fields


def cpu_peak(fields: Optional[Dict[str, str]] = None) -> Optional[CpuPeak]:
    """The CPU's peak rate from lscpu / /proc/cpuinfo (None if unknown)."""
    fields = _cpu_fields() if fields is None else fields
    flags = set(fields.get('Flags', '').split())
    if 'avx512f' in flags:
        lanes = 16
    elif {'avx2', 'fma'} <= flags:
        lanes = 8
    elif flags & {'sse2', 'asimd'}:
        lanes = 4
    else:
        return None
    for key, source in (('CPU max MHz', 'lscpu max MHz'),
                        ('cpu MHz', '/proc/cpuinfo cpu MHz'),
                        ('CPU MHz', 'lscpu MHz')):
        if fields.get(key):
            mhz, clock = float(fields[key]), source
            break
    else:
        return None
    try:
        cores = int(fields['Core(s) per socket']) * int(
            fields.get('Socket(s)', 1))
    except (KeyError, ValueError):
        cores = os.cpu_count() or 1
    return CpuPeak(fields.get('Model name', 'unknown CPU'), cores, lanes,
                   mhz / 1000, clock)


# ------------------------------------------------------------ measuring
@dataclass
class Case:
    """One timed callable and what it is."""
    subject: str
    form: str
    label: str                    # what the table calls this case
    fn: Callable[[], Any]
    macs: Optional[int] = None
    baseline: bool = False


@dataclass
class Row:
    """One measured case."""
    subject: str
    form: str
    task: str
    batch: int
    size: Size
    threads: int
    device: str
    measurement: Measurement
    macs: Optional[int] = None
    baseline: bool = False

    @property
    def median_ms(self) -> float:
        return self.measurement.median * 1e3

    @property
    def iqr_ms(self) -> float:
        return self.measurement.iqr * 1e3

    @property
    def input(self) -> str:
        return f'{self.batch}x3x{self.size[0]}x{self.size[1]}'


def measure(cases: Sequence[Case], threads: int, warmup: int,
            min_run_time: float, rounds: int) -> List[Measurement]:
    """Time every case in ``rounds`` interleaved rounds of
    ``Timer.blocked_autorange(min_run_time)`` each, after ``warmup`` calls;
    returns one merged Measurement per case (all rounds' samples)."""
    torch.set_num_threads(threads)
    for case in cases:
        for _ in range(warmup):
            case.fn()
    samples: Dict[int, List[Measurement]] = {i: [] for i in range(len(cases))}
    for _ in range(rounds):
        for i, case in enumerate(cases):
            timer = Timer('fn()', globals={'fn': case.fn},
                          num_threads=threads, label=case.label,
                          sub_label=f'case {i}')
            samples[i].append(
                timer.blocked_autorange(min_run_time=min_run_time))
    return [Measurement.merge(samples[i])[0] for i in range(len(cases))]


def build_cases(subjects: Sequence[Subject], forms: Sequence[str],
                task: str, batch: int, size: Size, device: str,
                with_macs: bool) -> Tuple[List[Case], List[str]]:
    """Every (subject, form) that applies, freshly built; and notes on the
    ones left out."""
    cases, notes, macs_cache = [], [], {}
    spec = TASKS[task]
    for subject in subjects:
        if task not in subject.tasks:
            notes.append(f'{subject.name}: no {task!r} task '
                         f'(it has {", ".join(subject.tasks)})')
            continue
        labels = set()
        for name in forms:
            form = FORMS[name]
            if form.fused and spec.training:
                notes.append(f'{name}: inference only, not run for the '
                             f'{task!r} task')
                continue
            model = subject.build().to(device)
            label = name
            fused = form.fused and builders.to_deploy(model)
            if form.fused and not fused and name.startswith('deploy'):
                label = unfused_name(name)   # nothing to fuse (ResNet-50)
            if label in labels:
                continue
            if spec.training:
                model.train()
            inputs = subject.inputs(model, batch, size, spec.training)
            macs = None
            if with_macs and not spec.training:
                key = (subject.name, form.fused)
                if key not in macs_cache:
                    macs_cache[key] = macs_of(model, inputs, task)
                macs = macs_cache[key]
            fn = form.make(model, inputs, spec.run)
            if fn is None:
                notes.append(f'{subject.name}, {name}: does not apply to '
                             f'the {task!r} task on {device}')
                continue
            labels.add(label)
            cases.append(Case(subject.name, label,
                              f'{subject.name} {label}', fn, macs,
                              subject.baseline))
    return cases, notes


def run_benchmark(subjects: Sequence[Subject], forms: Sequence[str],
                  task: Union[str, Sequence[str]], batches: Sequence[int],
                  sizes: Sequence[Size], threads: Sequence[int],
                  device: str = 'cpu', warmup: int = 2,
                  min_run_time: float = 1.0, rounds: int = 3,
                  with_macs: bool = True,
                  log: Callable[[str], Any] = print) -> List[Row]:
    """Measure every subject in every form on ``task`` (or on each of
    several tasks, such as :data:`SPLIT_TASKS`), per thread count, input
    size and batch size; the cases of each such group (all tasks
    included) are interleaved."""
    tasks = [task] if isinstance(task, str) else list(task)
    rows = []
    for n in threads:
        torch.set_num_threads(n)
        for size in sizes:
            for batch in batches:
                cases, case_tasks = [], []
                for name in tasks:
                    built, notes = build_cases(subjects, forms, name, batch,
                                               size, device, with_macs)
                    for note in dict.fromkeys(notes):
                        log(f'  note: {note}')
                    cases += built
                    case_tasks += [name] * len(built)
                results = measure(cases, n, warmup, min_run_time, rounds)
                for case, name, m in zip(cases, case_tasks, results):
                    rows.append(Row(case.subject, case.form, name, batch,
                                    size, n, device, m, case.macs,
                                    case.baseline))
                    what = f'{case.label} {name}' if len(tasks) > 1 \
                        else case.label
                    log(f'  {what:<48} {rows[-1].input:>16} '
                        f'{n} thr: {rows[-1].median_ms:9.2f} ms')
                del cases
    return rows


# ---------------------------------------------------------------- output
def _ms(value: float) -> str:
    return f'{value:.1f}' if value >= 10 else f'{value:.2f}'


def _group(row: Row):
    return (row.task, row.batch, row.size, row.threads, row.device)


def markdown_table(rows: Sequence[Row],
                   peak: Optional[CpuPeak] = None) -> str:
    """One line per row: median and IQR, speed-up over the same model's
    training form and over the baseline (ResNet-50) in the same group,
    achieved GMAC/s and its share of the CPU's peak."""
    training = {(_group(r), r.subject): r for r in rows if r.form ==
                'training'}
    baseline = {_group(r): r for r in rows if r.baseline and r.form ==
                'training'}
    base_name = next((r.subject for r in rows if r.baseline), None)
    with_macs = any(r.macs for r in rows)
    with_task = len({r.task for r in rows}) > 1
    head = ['model', 'form'] + (['task'] if with_task else []) + [
        'input', 'threads', 'median ms', 'IQR ms', 'x training']
    if base_name:
        head.append(f'x {base_name.split()[0]}')
    if with_macs:
        head.append('GMAC/s')
        if peak:
            head.append('% of peak')
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    for r in rows:
        ref = training.get((_group(r), r.subject))
        cells = [r.subject, r.form] + ([r.task] if with_task else []) + [
                 r.input, str(r.threads) if r.device == 'cpu' else r.device,
                 _ms(r.median_ms), _ms(r.iqr_ms),
                 f'{ref.median_ms / r.median_ms:.2f}' if ref else '-']
        if base_name:
            base = baseline.get(_group(r))
            cells.append(f'{base.median_ms / r.median_ms:.2f}'
                         if base else '-')
        if with_macs:
            rate = r.macs / r.measurement.median / 1e9 if r.macs else None
            cells.append(f'{rate:.1f}' if rate else '-')
            if peak:
                cells.append(f'{rate / peak.gmacs(r.threads):.0%}'
                             if rate and r.device == 'cpu' else '-')
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def _find(rows, subject, form, batch, size, threads, device='cpu',
          task='forward'):
    for r in rows:
        if (r.subject, r.form, r.task, r.batch, r.size, r.threads,
                r.device) == (subject, form, task, batch, size, threads,
                              device):
            return r
    return None


def goal_lines(rows: Sequence[Row]) -> List[str]:
    """The speed goals, where this run measured them (reported, not
    asserted): RepViT-M1.1's deploy form >= 1.2x its training form at
    1x3x512x512 on 2 threads; deploy + channels_last >= 1.3x plain deploy at
    8x3x224x224; and a segmentor in onnxruntime at least as fast as in eager
    PyTorch, deploy form (every size measured)."""
    lines = []
    for r in rows:
        if r.task == 'forward' and (r.subject, r.form, r.batch, r.size,
                                    r.threads, r.device) == (
                'RepViT-M1.1', 'deploy', 1, (512, 512), 2, 'cpu'):
            ref_form = 'training'
            goal, what = 1.2, 'deploy / training form, 1x3x512x512, 2 threads'
        elif (r.task == 'forward' and r.subject.startswith('RepViT')
              and r.form == 'deploy+channels_last' and r.batch == 8
              and r.size == (224, 224)):
            ref_form = 'deploy'
            goal, what = 1.3, (f'deploy+channels_last / deploy, 8x3x224x224,'
                               f' {r.threads} threads')
        elif r.task == 'predict' and r.form == 'onnxruntime':
            ref_form = 'deploy'
            goal, what = 1.0, (f'onnxruntime / eager PyTorch deploy form, '
                               f'{r.input}, {r.threads} threads')
        else:
            continue
        ref = _find(rows, r.subject, ref_form, r.batch, r.size, r.threads,
                    r.device, r.task)
        if ref:
            ratio = ref.median_ms / r.median_ms
            lines.append(f'goal {r.subject} {what}: {ratio:.2f}x (goal >= '
                         f'{goal}x: {"met" if ratio >= goal else "NOT met"})')
    return lines


# ------------------------------------------------------ whole-model split
#: The tasks whose differences split a whole model's time: backbone, neck
#: (features - backbone) and heads (predict - features).
SPLIT_TASKS = ('backbone', 'features', 'predict')


def _gmacs(macs: float) -> str:
    return f'{macs / 1e9:.1f}' if macs >= 1e10 else f'{macs / 1e9:.2f}'


def _ratio(num, den, fmt='{:.2f}') -> str:
    return fmt.format(num / den) if num and den else '-'


def split_table(rows: Sequence[Row]) -> str:
    """Where the time of a whole detector / segmentor goes, from rows of the
    :data:`SPLIT_TASKS`: per model and form, backbone, neck (features minus
    backbone) and heads (predict minus features: the heads and their
    post-processing) in ms with their share of the whole; then backbone +
    neck and the whole model against the baseline's training form, the
    measured speed-up beside its bound from the MAC counts (the baseline's
    MACs over the model's: what the speed-up would be if time followed
    MACs); and the MACs of each part. A part below zero or above the whole
    (the noise of the medians exceeds it) is marked 'n/a (noise: ...)',
    with a footnote."""
    by = {(r.subject, r.form, r.task, r.batch, r.size, r.threads, r.device):
          r for r in rows}
    base = {(r.task, r.batch, r.size, r.threads, r.device): r
            for r in rows if r.baseline and r.form == 'training'}
    base_name = next((r.subject for r in rows if r.baseline),
                     'ResNet-50').split()[0]
    keys = list(dict.fromkeys((r.subject, r.form, r.batch, r.size,
                               r.threads, r.device) for r in rows
                              if r.task in SPLIT_TASKS))

    def ms(key, task):
        row = by.get(key[:2] + (task, ) + key[2:])
        return row.median_ms if row else None

    def macs(key, task):
        row = by.get(key[:2] + (task, ) + key[2:])
        return row.macs if row else None

    def part(whole, less):
        return whole - less if whole is not None and less is not None \
            else None

    noisy = []

    def cell(value, total):
        if value is None:
            return '-'
        if value < 0 or (total and value > total):
            noisy.append(value)
            over = f', {value / total:.0%} of the whole' if value > 0 \
                else ''
            return f'n/a (noise: {_ms(value)} ms{over})'
        share = f' ({value / total:.0%})' if total else ''
        return _ms(value) + share

    head = ['model', 'form', 'input', 'threads', 'backbone ms', 'neck ms',
            'heads ms', 'whole ms', f'backbone + neck x {base_name} (MAC '
            'bound)', f'whole x {base_name} (MAC bound)']
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    mac_lines = []
    for key in keys:
        subject, form, batch, size, threads, device = key
        b, f, p = (ms(key, t) for t in SPLIT_TASKS)
        total = p if p is not None else f
        group = (batch, size, threads, device)
        ref_f, ref_p = (base.get((t, ) + group) for t in ('features',
                                                          'predict'))
        cells = [subject, form, f'{batch}x3x{size[0]}x{size[1]}',
                 str(threads) if device == 'cpu' else device,
                 cell(b, total), cell(part(f, b), total),
                 cell(part(p, f), total), cell(p, None)]
        for ref, mine, task in ((ref_f, f, 'features'),
                                (ref_p, p, 'predict')):
            measured = _ratio(ref.median_ms if ref else None, mine)
            bound = _ratio(ref.macs if ref else None, macs(key, task))
            cells.append(f'{measured} ({bound})')
        lines.append('| ' + ' | '.join(cells) + ' |')
        mb, mf, mp = (macs(key, t) for t in SPLIT_TASKS)
        if form in ('training', 'deploy') and mb:
            mac_lines.append(
                f'| {subject} | {form} | {batch}x3x{size[0]}x{size[1]} | ' +
                ' | '.join(_gmacs(v) if v is not None else '-'
                           for v in (mb, part(mf, mb), part(mp, mf), mp)) +
                ' |')
    if noisy:
        lines += ['', 'n/a (noise): below zero or above the whole, so not '
                  'a time: the noise of the medians (the neck and heads are '
                  'differences of two) exceeds that part here; more '
                  '--rounds, a longer --min-run-time or a quieter machine '
                  'measure it.']
    if mac_lines:
        lines += ['', '| model | form | input | backbone GMACs | neck GMACs '
                  '| heads GMACs | whole GMACs |', '|' + '---|' * 7]
        # MACs do not depend on the thread count: one line per model, form
        # and input even when several thread counts were timed
        lines += list(dict.fromkeys(mac_lines))
    return '\n'.join(lines)


# ------------------------------------------------- training-step breakdown
BREAKDOWN_PARTS = ('data preprocessor', 'backbone forward',
                   'backbone forward+backward', 'neck forward+backward',
                   'heads forward+backward', 'whole step')
BREAKDOWN_FORMS = ('training', 'channels_last')


def breakdown_cases(subject: Subject, form: str, batch: int, size: Size,
                    device: str) -> List[Case]:
    """The parts of one training step of a detector or segmentor, each timed
    alone with the same inputs and fixed random output gradients: the data
    preprocessor (normalise, pad, stack), the backbone (forward; forward +
    backward), the neck and the heads (forward + backward from detached
    inputs that require grad, as in the step), and the whole step.
    ``form``: 'training' or 'channels_last' (the backbone and neck in
    channels_last, as the 'train' task runs them: images converted on the
    way into the backbone, NCHW features out of the neck, because mmcv's
    RoIAlign misreads channels_last features)."""
    if subject.packed is None:
        raise ValueError(f'{subject.name}: the training-step breakdown '
                         f'needs a detector or segmentor config.')
    if form not in BREAKDOWN_FORMS:
        raise ValueError(f'The training-step breakdown runs the training '
                         f'or channels_last form, not {form!r}.')
    model = subject.build().to(device)
    model.train()
    if form == 'channels_last':
        use_channels_last(model)
    packed = subject.packed(batch, size)
    data = model.data_preprocessor(packed, True)
    inputs = data['inputs']
    with torch.no_grad():
        feats = model.backbone(inputs)
        necks = model.neck(feats) if model.with_neck else feats
    generator = torch.Generator().manual_seed(0)
    feat_grads, neck_grads = ([
        torch.randn(t.shape, generator=generator).to(t) for t in tensors
    ] for tensors in (feats, necks))

    def preprocessor():
        model.data_preprocessor(packed, True)

    def backbone_forward():
        model.backbone(inputs)

    def backbone_forward_backward():
        _backward(model.backbone(inputs), feat_grads, model)

    def neck_forward_backward():
        x = [f.detach().requires_grad_() for f in feats]
        _backward(model.neck(x), neck_grads, model)

    def heads_forward_backward():
        x = [f.detach().requires_grad_() for f in necks]
        model.extract_feat = lambda _: x
        try:
            _train_step(model, data)
        finally:
            del model.extract_feat

    def whole_step():
        _train_step(model, model.data_preprocessor(packed, True))

    parts = (preprocessor, backbone_forward, backbone_forward_backward,
             neck_forward_backward if model.with_neck else None,
             heads_forward_backward, whole_step)
    return [Case(subject.name, f'{form}: {part}',
                 f'{subject.name} {form} {part}', fn,
                 baseline=subject.baseline)
            for part, fn in zip(BREAKDOWN_PARTS, parts) if fn is not None]


def _backward(outputs, grads, model):
    # Outputs of frozen stages (ResNet-50's first) need no gradient.
    pairs = [(o, g) for o, g in zip(outputs, grads) if o.requires_grad]
    torch.autograd.backward(*zip(*pairs))
    model.zero_grad(set_to_none=True)


def breakdown_table(subjects: Sequence[str], forms: Sequence[str],
                    cases: Sequence[Case],
                    results: Sequence[Measurement]) -> str:
    """Median ms of each part, one column per (model, form); the backbone's
    backward is forward+backward minus forward."""
    ms = {(c.subject, c.form): m.median * 1e3
          for c, m in zip(cases, results)}
    columns = [(s, f) for s in subjects for f in forms]
    parts = list(BREAKDOWN_PARTS)
    parts.insert(3, 'backbone backward (difference)')
    parts.insert(-1, 'sum of the parts')
    lines = ['| part | ' + ' | '.join(f'{s}, {f}' for s, f in columns) +
             ' |', '|' + '---|' * (len(columns) + 1)]
    for part in parts:
        cells = []
        for s, f in columns:
            if part.startswith('backbone backward'):
                fwd = ms.get((s, f'{f}: backbone forward'))
                both = ms.get((s, f'{f}: backbone forward+backward'))
                value = both - fwd if fwd and both else None
            elif part == 'sum of the parts':
                value = sum(ms.get((s, f'{f}: {p}'), 0) for p in (
                    'data preprocessor', 'backbone forward+backward',
                    'neck forward+backward', 'heads forward+backward'))
            else:
                value = ms.get((s, f'{f}: {part}'))
            cells.append(_ms(value) if value is not None else '-')
        lines.append(f'| {part} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


# ---------------------------------------------------------------- memory
def _rss_kib() -> int:
    with open('/proc/self/statm') as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize() // 1024


def _memory_child(arch, size, batch, with_cp, threads, device, queue):
    from mmrepvit import RepViT
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = RepViT(arch, with_cp=with_cp).train().to(device)
    x = torch.randn(batch, 3, *size, device=device)
    cuda = torch.device(device).type == 'cuda'
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    else:
        base = _rss_kib() * 1024
    sum(o.mean() for o in model(x)).backward()
    if cuda:
        peak = torch.cuda.max_memory_allocated(device)
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    queue.put((peak - base) / 2**20)


def train_step_memory(arch: str, size: Size, batch: int, with_cp: bool,
                      threads: int = 1, device: str = 'cpu') -> float:
    """MiB one training step (forward + backward) of the backbone adds to
    the peak: on CPU the peak resident set size over the resident size just
    before the step, on CUDA the peak allocated memory over the allocated
    memory before it. Runs in a fresh process, so earlier work does not
    hide the peak."""
    ctx = multiprocessing.get_context('spawn')
    queue = ctx.Queue()
    proc = ctx.Process(target=_memory_child, args=(
        arch, size, batch, with_cp, threads, device, queue))
    proc.start()
    proc.join()
    if proc.exitcode != 0:
        raise RuntimeError(f'The memory measurement process for {arch} '
                           f'exited with status {proc.exitcode} (its error '
                           f'is printed above).')
    return queue.get(timeout=10)
