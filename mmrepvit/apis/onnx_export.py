# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
"""Export a fused RepViT model to ONNX, checked in onnxruntime."""
import contextlib
import functools
import io
import json
import os
import os.path as osp
import warnings
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..models import RepViT
from ..utils.compat import onnx_export_kwargs
from .fuse import deploy_copy, find_repvits, unwrap_model

PARTS = ('backbone', 'features', 'segmentor')
_EXPORT_KWARGS = onnx_export_kwargs()


class ParityError(RuntimeError):
    """onnxruntime and PyTorch disagree beyond the tolerance."""

    def __init__(self, message: str, report: 'OnnxReport'):
        super().__init__(message)
        self.report = report


class OnnxReport(NamedTuple):
    """What :func:`export_onnx` wrote and checked."""
    part: str
    opset: int
    output_names: List[str]
    # input shape -> maximum relative difference, onnxruntime vs PyTorch
    max_rel_diff: Dict[Tuple[int, ...], float]


class _Exported(nn.Module):
    """Images -> neck features, or logits at input size, or ``labels``."""

    def __init__(self, model, kind: str, labels: bool = False):
        super().__init__()
        self.model, self.kind, self.labels = model, kind, labels
        self.training = False

    def train(self, mode: bool = True):
        # The fused copy stays in eval mode: export's train(False), and its
        # restore after tracing, have nothing to change.
        return self

    def forward(self, x):
        feats = self.model.extract_feat(x)
        if self.kind == 'features':
            return tuple(feats)
        logits = F.interpolate(self.model.decode_head(feats),
                               size=x.shape[2:], mode='bilinear',
                               align_corners=self.model.align_corners)
        return logits.argmax(1) if self.labels else logits


def onnx_part(model: nn.Module, part: Optional[str] = None) -> str:
    """What :func:`export_onnx` exports of ``model``.

    Args:
        model (nn.Module): The model, wrapped or not.
        part (str, optional): One of :data:`PARTS`. Defaults to ``None``:
            the whole of what the model is.

    Returns:
        str: ``'backbone'``, ``'features'`` or ``'segmentor'``.

    Raises:
        ValueError: ``part`` cannot be exported, or there is no RepViT.
    """
    net = unwrap_model(model)
    kind = _kind(net, part)
    find_repvits(net)
    return kind


def _kind(net: nn.Module, part: Optional[str]) -> str:
    """:func:`onnx_part` of an unwrapped model, whatever its backbone."""
    if part is not None and part not in PARTS:
        raise ValueError(f'part must be one of {PARTS} or None, got '
                         f'{part!r}.')
    extracts = hasattr(net, 'extract_feat')
    kind = ('backbone' if isinstance(net, RepViT) else
            'segmentor' if extracts and hasattr(net, 'decode_head') else
            'features' if extracts and hasattr(net, 'neck') else None)
    has_backbone = isinstance(getattr(net, 'backbone', None), RepViT)
    has_neck = kind == 'segmentor' and getattr(net, 'with_neck', False)
    if part == 'backbone' and has_backbone or part == 'features' and has_neck:
        kind = part
    elif kind is None or part not in (None, kind):
        raise ValueError(
            f'Cannot export {"part " + repr(part) + " of " if part else ""}a '
            f'{type(net).__name__}: export_onnx takes a RepViT ("backbone"), '
            f'a detector with a RepViT backbone and a neck ("features", '
            f'"backbone") or an EncoderDecoder ("segmentor", "features" '
            f'with a neck, "backbone").')
    return kind


@contextlib.contextmanager
def _dynamic_upsampling(model: nn.Module):
    """Make mmseg's ``Upsample`` export with dynamic sizes while inside."""
    # Its int(size * scale_factor) traces as a constant; for an integer
    # factor, interpolating by scale_factor is the same and stays dynamic.
    Upsample = ()   # none without mmseg
    with contextlib.suppress(ImportError):
        from mmseg.models.utils import Upsample
    patched = [m for m in model.modules() if isinstance(m, Upsample)
               and not m.size and isinstance(m.scale_factor, float)
               and m.scale_factor.is_integer()]
    for m in patched:
        m.forward = functools.partial(
            F.interpolate, scale_factor=m.scale_factor, mode=m.mode,
            align_corners=m.align_corners)
    try:
        yield
    finally:
        for m in patched:
            del m.forward


def rel_diff(ours: Sequence, references: Sequence) -> float:
    """Largest difference of paired outputs, relative to each reference."""
    pairs = [(np.asarray(a, np.float64), np.asarray(b, np.float64))
             for a, b in zip(ours, references)]
    return max([0.0] + [float(np.abs(a - b).max()) /
                        (float(np.abs(b).max()) or 1.0) for a, b in pairs])


def ort_session(path, threads: Optional[int] = None):
    """An onnxruntime CPU session of a file or its bytes, fully optimised;
    ``threads``: intra-op threads."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.graph_optimization_level = \
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(path, options,
                                providers=['CPUExecutionProvider'])


def onnx_record(model: nn.Module, part: Optional[str] = None) -> dict:
    """What an export records of ``model``: the settings its outputs do not
    show (the RepViT's arch, stage ends, out_indices, input channels and,
    for a whole segmentor, its classes).

    Args:
        model (nn.Module): A bare RepViT, a detector or a segmentor (not
            wrapped: :func:`unwrap_model`).
        part (str, optional): What is exported of it. Defaults to ``None``:
            a segmentor's classes are recorded.

    Returns:
        dict: JSON-ready settings (for another backbone, its class name).
    """
    backbone = model if isinstance(model, RepViT) else getattr(
        model, 'backbone', None)
    if not isinstance(backbone, RepViT):
        return dict(backbone=type(backbone).__name__)
    arch = backbone.arch_settings
    record = dict(backbone='RepViT', widths=list(arch['widths']),
                  depths=list(arch['depths']),
                  stage_ends=backbone.stage_ends,
                  out_indices=list(backbone.out_indices),
                  in_channels=backbone.in_channels)
    head = getattr(model, 'decode_head', None)
    if head is not None and part in (None, 'segmentor'):
        record['classes'] = head.out_channels
    return record


def _to_onnx(wrapper, kind, labels, x, opset,
             record) -> Tuple[List[str], bytes]:
    """Output names and the checked ONNX file of ``wrapper`` traced on x,
    ``record`` (:func:`onnx_record`) in its ``metadata_props``."""
    import onnx
    if kind == 'segmentor':
        names = ['labels' if labels else 'logits']
    elif kind == 'backbone':   # by stage, as out_indices counts them
        names = [f'stage{i}' for i in wrapper.out_indices]
    else:
        with torch.no_grad():
            names = [f'level{i}' for i in range(len(wrapper(x)))]
    image = {0: 'batch', 2: 'height', 3: 'width'}
    known = dict(input=image, logits=image,
                 labels={0: 'batch', 1: 'height', 2: 'width'})
    dynamic = {n: known.get(n, {0: 'batch', 2: f'{n}_height',
                                3: f'{n}_width'}) for n in ['input'] + names}
    buffer = io.BytesIO()   # the file is written once, after the checks
    with warnings.catch_warnings(), _dynamic_upsampling(wrapper):
        # Channel-axis shape checks rightly trace as constants; the parity
        # check at a second size tests the other axes.
        warnings.simplefilter('ignore', torch.jit.TracerWarning)
        warnings.simplefilter('ignore', DeprecationWarning)
        torch.onnx.export(
            wrapper, (x, ), buffer, opset_version=opset,
            input_names=['input'], output_names=names,
            dynamic_axes=dynamic, **_EXPORT_KWARGS)
    proto = onnx.load_from_string(buffer.getvalue())
    onnx.helper.set_model_props(proto, {'mmrepvit': json.dumps(record)})
    onnx.checker.check_model(proto, full_check=True)
    return names, proto.SerializeToString()


def _parity(data: bytes, reference, inputs, labels: bool) -> dict:
    """Input shape -> relative difference of the file ``data`` in ORT."""
    session = ort_session(data)
    diffs = {}
    for x in inputs:
        with torch.no_grad():
            ref = reference(x)
        ours = session.run(None, {'input': x.numpy()})
        if labels:   # the logit margin that the label map contradicts
            logits = ref.numpy()
            theirs = np.take_along_axis(logits, ours[0][:, None], 1)
            margin = float((logits.max(1, keepdims=True) - theirs).max())
            diff = margin / (float(np.abs(logits).max()) or 1.0)
        else:
            diff = rel_diff(ours, [ref] if torch.is_tensor(ref) else ref)
        diffs[tuple(x.shape)] = diff
    return diffs


def export_onnx(model: nn.Module, out: str,
                shape: Tuple[int, int] = (512, 512),
                part: Optional[str] = None, labels: bool = False,
                opset: int = 17,
                check_shapes: Optional[Sequence[Tuple[int, ...]]] = None,
                tolerance: float = 1e-4) -> OnnxReport:
    """Export the deploy form of ``model`` to ONNX, checked in onnxruntime.

    ``model`` is not changed. The input ``input`` is the preprocessed image
    batch (N x C x H x W float32) with dynamic batch, height and width.
    The file records the model's :func:`onnx_record` (``metadata_props``,
    key ``'mmrepvit'``, JSON), which :func:`check_onnx_file` compares.

    Args:
        model (nn.Module): A bare RepViT, or a detector or segmentor with a
            RepViT backbone (wrapped or not).
        out (str): The ``.onnx`` file to write.
        shape (tuple[int, int]): Height and width of the export and of the
            first parity check. Defaults to ``(512, 512)``.
        part (str, optional): ``'backbone'`` (one output per stage),
            ``'features'`` (backbone + neck) or ``'segmentor'`` (logits at
            the input size). Defaults to ``None``: the whole model.
        labels (bool): A segmentor outputs its arg-max label map (int64).
            Defaults to ``False``.
        opset (int): ONNX opset. Defaults to ``17``.
        check_shapes (Sequence[tuple], optional): Input shapes of the parity
            check. Defaults to 1 x C x ``shape`` and a second batch and size.
        tolerance (float): Largest accepted difference to PyTorch, relative
            to the largest output magnitude. Defaults to ``1e-4``.

    Returns:
        OnnxReport: What was exported and the difference per input shape.

    Raises:
        ParityError: onnxruntime differs beyond ``tolerance``; no file.
        ValueError: The model or ``part`` cannot be exported.
        OSError: ``out`` is a folder, or a file that is no ONNX file (a
            checkpoint given twice, say): only ONNX files are overwritten.
    """
    if osp.isdir(out):
        raise IsADirectoryError(f'{out!r} is a directory; give the path of '
                                f'the .onnx file to write.')
    if osp.isfile(out):
        with open(out, 'rb') as f:   # an ONNX file: ir_version, field 1
            if f.read(1) not in (b'', b'\x08'):
                raise FileExistsError(
                    f'{out!r} exists and is no ONNX file (a checkpoint?); '
                    f'export_onnx overwrites ONNX files only: give another '
                    f'output path.')
    net = deploy_copy(model)
    kind = _kind(net, part)   # deploy_copy found the RepViTs
    if labels and kind != 'segmentor':
        raise ValueError(f'labels=True (--labels) is for a whole segmentor; '
                         f'this export is the {kind}.')
    backbone = net if isinstance(net, RepViT) else net.backbone
    wrapper = backbone if kind == 'backbone' else _Exported(net, kind, labels)
    if check_shapes is None:
        c, (h, w) = backbone.in_channels, shape
        check_shapes = [(1, c, h, w), (2, c, h + 32, w + 64)]
    generator = torch.Generator().manual_seed(0)
    inputs = [torch.randn(*s, generator=generator) for s in check_shapes]
    names, data = _to_onnx(wrapper, kind, labels, inputs[0], opset,
                          onnx_record(net, kind))
    reference = _Exported(net, kind) if labels else wrapper
    diffs = _parity(data, reference, inputs, labels)
    report = OnnxReport(kind, opset, names, diffs)
    if not max(diffs.values()) <= tolerance:
        per_shape = ', '.join(f'{"x".join(map(str, s))}: {d:.2e}'
                              for s, d in diffs.items())
        raise ParityError(
            f'onnxruntime differs from PyTorch by {max(diffs.values()):.2e} '
            f'relative (tolerance {tolerance:.0e}; per input shape: '
            f'{per_shape}); {out} not written.', report)
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    tmp = f'{out}.tmp'
    try:
        with open(tmp, 'wb') as f:
            f.write(data)
        os.replace(tmp, out)
    finally:
        if osp.exists(tmp):
            os.remove(tmp)
    return report
