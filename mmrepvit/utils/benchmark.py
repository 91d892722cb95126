# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
"""Latency and MACs of models (:class:`Subject`) run in several ways
(:data:`FORMS`), for the analysis tools."""
import itertools
import os.path as osp
import tempfile
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, List, Sequence

import torch
from mmengine.analysis import FlopAnalyzer
from torch.utils.benchmark import Measurement, Timer

from .. import apis
from ..models import RepViT
from .benchmark_tables import Row

BASELINE = 'resnet50'
ARCHES = list(RepViT.arch_zoo) + [BASELINE]


def _backbone(arch: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if arch != BASELINE:
        return RepViT(arch).eval()
    from mmdet.models.backbones import ResNet
    model = ResNet(depth=50)
    model.eval()   # its train() returns None
    return model


def _train_step(model, data):
    torch.manual_seed(0)   # the same RoI sampling in every call
    loss, _ = model.parse_losses(model(**data, mode='loss'))
    loss.backward()
    model.zero_grad(set_to_none=True)


#: What a timed call of each task does, ``run(model, inputs)``, and what
#: stands for ``model.forward`` when its MACs are counted (None: not counted).
TASKS = {
    'forward': (lambda m, x: m(x), lambda m, x: m.forward),
    'predict': (lambda m, d: m(**d, mode='predict'),
                lambda m, d: partial(m.forward, mode='tensor',
                                     data_samples=d['data_samples'])),
    'features': (lambda m, d: m.extract_feat(d['inputs']),
                 lambda m, d: m.extract_feat),
    'backbone': (lambda m, d: m.backbone(d['inputs']),
                 lambda m, d: lambda x: m.backbone(x)),   # not a Module
    'train': (_train_step, None),
}


def _image(inputs) -> torch.Tensor:
    return inputs if isinstance(inputs, torch.Tensor) else inputs['inputs']


def flop_analyzer(model: torch.nn.Module, inputs,
                  task: str = 'forward') -> FlopAnalyzer:
    """Quiet ``FlopAnalyzer`` of a task call (predict: as get_flops.py)."""
    model.forward = TASKS[task][1](model, inputs)   # keeps module names
    try:
        with torch.no_grad():
            analyzer = FlopAnalyzer(model, (_image(inputs), ))
            analyzer.unsupported_ops_warnings(False)
            analyzer.uncalled_modules_warnings(False).total()
    finally:
        del model.forward
    return analyzer


def _pytorch(name, model, inputs, task):
    """Form ``name`` in PyTorch; None for float16 off CUDA."""
    fp16 = name.endswith('+fp16')
    if fp16 and not next(model.parameters()).is_cuda:
        return None
    if 'channels_last' in name and _image(inputs) is inputs:   # a backbone
        model.to(memory_format=torch.channels_last)
        inputs = inputs.contiguous(memory_format=torch.channels_last)
    elif 'channels_last' in name:   # backbone + neck: mmcv's RoIAlign
        apis.use_channels_last(model)   # misreads channels_last
    fn = partial(TASKS[task][0], model, inputs)
    return torch.autocast('cuda', dtype=torch.float16)(fn) if fp16 else fn


def _onnx(name, model, inputs, task):
    """Form ``name``: the exported deploy form, run on the CPU."""
    backend, _, kind = name.partition('+')   # kind: '', 'int8' or 'bf16'
    precision = 'bf16' if kind == 'bf16' else 'fp32'
    part = {'predict': 'segmentor', 'features': 'features'}.get(
        task, 'backbone')
    if next(model.parameters()).is_cuda:
        return None
    try:
        apis.onnx_part(model, part)
    except ValueError:
        return None
    x = _image(inputs).contiguous().numpy()
    with tempfile.TemporaryDirectory() as tmp:
        path = fp32 = osp.join(tmp, 'model.onnx')
        apis.export_onnx(model, fp32, x.shape[2:], part=part,
                         labels=part == 'segmentor', check_shapes=[x.shape])
        if kind == 'int8':   # calibrated on the timed input: for speed only
            path = osp.join(tmp, 'int8.onnx')
            # only Conv: the INT8 file OpenVINO runs fastest (docs/deploy.md)
            apis.quantize_onnx(fp32, path, [x], op_types=['Conv'] if
                               backend == 'openvino' else None)
        try:
            runner = apis.OnnxRunner(path, backend, precision,
                                     threads=torch.get_num_threads(),
                                     shape=x.shape)
        except ValueError:   # bf16 where the CPU runs none
            if precision != 'bf16':
                raise
            return None
    return partial(runner, x)


CUDA_AMP_FORMS = ('deploy+fp16', 'deploy+channels_last+fp16')
CPU_FORMS = ('onnxruntime', 'onnxruntime+int8', 'openvino', 'openvino+bf16',
             'openvino+int8')
#: name: (make, fuse first). ``make(model, inputs, task)`` prepares both in
#: place; returns the timed callable, or None where the form does not apply.
FORMS = {name: (partial(_onnx if name in CPU_FORMS else _pytorch, name),
                name not in ('training', 'channels_last'))
         for name in ('training', 'channels_last', 'deploy',
                      'deploy+channels_last', *CUDA_AMP_FORMS, *CPU_FORMS)}


@dataclass
class Subject:
    """A model to time; ``cfg``: its config, None for a bare backbone."""
    name: str
    build: Callable[[], torch.nn.Module]
    cfg: Any = None
    baseline: bool = False

    @classmethod
    def of(cls, source, baseline: bool = False) -> 'Subject':
        """The subject of an arch of :data:`ARCHES` or of a config."""
        if isinstance(source, str):
            return cls('ResNet-50' if source == BASELINE else 'RepViT-' +
                       source.upper().replace('_', '.'),
                       partial(_backbone, source),
                       baseline=baseline or source == BASELINE)
        bb = source.model.backbone
        name = bb.type + (f'-{bb.depth}' if 'depth' in bb else '')
        if bb.type == 'RepViT' and isinstance(bb.arch, str):
            name = cls.of(bb.arch).name
        return cls(f'{name} {source.model.type}',
                   partial(apis.build_model, source), source, baseline)

    def inputs(self, model: torch.nn.Module, batch: int, size: Sequence[int],
               training: bool = False):
        """Seeded random inputs on the model's device, as it takes them."""
        gen, shape = torch.Generator().manual_seed(0), tuple(size)
        if self.cfg is None:
            return torch.randn(batch, 3, *shape, generator=gen).to(
                next(model.parameters()).device)
        m = self.cfg.model
        classes = (m.get('decode_head') or m.get('bbox_head') or
                   m.roi_head.bbox_head).num_classes
        if self.cfg.default_scope == 'mmdet':
            from mmdet.testing import demo_mm_inputs  # seeds itself
            data = demo_mm_inputs(batch, (3, *shape), [3] * batch, classes,
                                  with_mask=True)
        else:
            from mmengine.structures import PixelData
            from mmseg.structures import SegDataSample
            images = [torch.randint(0, 256, (3, *shape), dtype=torch.uint8,
                                    generator=gen) for _ in range(batch)]
            meta = dict(img_shape=shape, ori_shape=shape, pad_shape=shape)
            samples = [SegDataSample(metainfo=meta, gt_sem_seg=PixelData(
                data=torch.randint(0, classes, (1, *shape), generator=gen)))
                for _ in range(batch)]
            data = dict(inputs=images, data_samples=samples)
        return model.data_preprocessor(data, training)


def _cases(subject, task, forms, batch, size, device, with_macs, notes):
    """(Row, timed callable) of each form that applies to the task."""
    if (task == 'forward') != (subject.cfg is None):
        notes.append(f'{subject.name}: no {task!r} task')
        return []
    cases, macs, training = [], {}, task == 'train'
    for name in forms:
        make, fused = FORMS[name]
        model, label = subject.build().to(device), name
        if fused and not apis.switch_to_deploy(model) and \
                name.startswith('deploy'):   # nothing to fuse
            label = name[7:] if '+' in name else 'training'
        if any(row.form == label for row, _ in cases):
            continue
        model.train(training)
        inputs = subject.inputs(model, batch, size, training)
        if with_macs and not training and fused not in macs:
            macs[fused] = flop_analyzer(model, inputs, task).total()
        fn = None if fused and training else make(model, inputs, task)
        if fn is None:
            notes.append(f'{subject.name}, {name}: does not apply to the '
                         f'{task!r} task on {device}')
            continue
        where = str(torch.get_num_threads()) if device == 'cpu' else device
        cases.append((Row(subject.name, label, task,
                          f'{batch}x3x{size[0]}x{size[1]}', where,
                          macs.get(fused), subject.baseline),
                      fn if training else torch.no_grad()(fn)))
    return cases


def run_benchmark(subjects: Sequence[Subject], forms: Sequence[str],
                  tasks: Sequence[str], batches: Sequence[int],
                  sizes: Sequence[Sequence[int]], threads: Sequence[int],
                  device: str = 'cpu', warmup: int = 2,
                  min_run_time: float = 1.0, rounds: int = 3,
                  with_macs: bool = True,
                  log: Callable[[str], Any] = print) -> List[Row]:
    """Time every subject in every form on each task.

    A fused form of a model with nothing to fuse (ResNet-50) is its
    unfused form; forms that do not apply are logged as notes.

    Args:
        subjects (Sequence[Subject]): The models.
        forms, tasks (Sequence[str]): Names in :data:`FORMS`, :data:`TASKS`.
        batches, sizes, threads: Batch sizes, (H, W) sizes, thread counts.
        device (str): ``'cpu'`` or a CUDA device. Defaults to ``'cpu'``.
        warmup (int): Untimed calls per case. Defaults to 2.
        min_run_time (float): Seconds per case and round. Defaults to 1.0.
        rounds (int): Interleaved rounds. Defaults to 3.
        with_macs (bool): Count MACs. Defaults to ``True``.
        log (Callable): Takes notes and times. Defaults to ``print``.

    Returns:
        list[Row]: The cases, their rounds' samples merged.
    """
    rows = []
    for n, size, batch in itertools.product(threads, sizes, batches):
        torch.set_num_threads(n)
        cases, notes = [], []
        for task, subject in itertools.product(tasks, subjects):
            cases += _cases(subject, task, forms, batch, size, device,
                            with_macs, notes)
        for note in dict.fromkeys(notes):
            log(f'  note: {note}')
        for _, fn in cases * warmup:
            fn()
        # interleaved rounds: drift in the machine's load hits all alike
        timed = [[Timer('fn()', globals={'fn': fn}, num_threads=n)
                  .blocked_autorange(min_run_time=min_run_time)
                  for _, fn in cases] for _ in range(rounds)]
        for (row, _), samples in zip(cases, zip(*timed)):
            row.time = Measurement.merge(samples)[0]
            rows.append(row)
            log(f'  {row.subject} {row.form} {row.task:<24} {row.input:>16} '
                f'{n} thr: {row.median_ms:9.2f} ms')
    return rows
