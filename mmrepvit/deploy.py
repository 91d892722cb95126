# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
"""Deployment: fuse a whole detector or segmentor for inference, write fused
checkpoints, and export the deploy form to ONNX with an onnxruntime parity
check.

Fused checkpoints need nothing here to load: :class:`mmrepvit.RepViT`
recognises the form of the weights it is given (see
``RepViT._load_from_state_dict``), so ``tools/test.py``, the inferencers,
``init_detector`` and ``init_model`` take them as they are.
"""
import contextlib
import copy
import os
import os.path as osp
import warnings
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.hooks import Hook
from mmengine.model import (BaseTTAModel, is_model_wrapper,
                            revert_sync_batchnorm)
from mmengine.registry import HOOKS

from .models import RepViT, switch_to_deploy

PARTS = ('backbone', 'features', 'segmentor')


def _unwrap(model: nn.Module) -> nn.Module:
    """The model inside DDP-like wrappers and test-time augmentation models
    (``BaseTTAModel``, what ``tools/test.py --tta`` builds), through any
    nesting (DDP around a TTA model)."""
    while is_model_wrapper(model) or isinstance(model, BaseTTAModel):
        model = model.module
    return model


def _repvits(model: nn.Module) -> List[RepViT]:
    found = [m for m in model.modules() if isinstance(m, RepViT)]
    if not found:
        raise ValueError(
            f'{type(model).__name__} has no RepViT backbone: mmrepvit fuses '
            f'and exports models whose backbone is type="RepViT".')
    return found


def fuse_model(model: nn.Module, channels_last: bool = False) -> nn.Module:
    """Prepare a detector, a segmentor or a bare RepViT for inference in one
    call, in place: eval mode, every RepViT fused (re-parameterised), and
    with ``channels_last`` the backbone and neck running in that memory
    format (see :func:`use_channels_last`). Predictions stay the same up to
    float rounding. Returns ``model``.

    Example:
        >>> from mmdet.apis import DetInferencer
        >>> inferencer = DetInferencer(model=CONFIG, weights=CHECKPOINT)
        >>> fuse_model(inferencer.model, channels_last=True)
    """
    net = _unwrap(model)
    _repvits(net)
    net.eval()
    switch_to_deploy(net)
    if channels_last:
        use_channels_last(net)
    return model


def _to_channels_last(module, args):
    return tuple(a.contiguous(memory_format=torch.channels_last)
                 if torch.is_tensor(a) and a.dim() == 4 else a for a in args)


def _to_contiguous(module, args, outputs):
    if torch.is_tensor(outputs):
        return outputs.contiguous()
    return type(outputs)(o.contiguous() if torch.is_tensor(o) else o
                         for o in outputs)


def use_channels_last(model: nn.Module) -> nn.Module:
    """Run the backbone and neck of ``model`` (or a bare backbone) in the
    channels_last memory format, in place: their weights are converted, the
    image is converted on the way in, and their outputs go back to the
    default layout for the heads, because mmcv's compiled ops (RoIAlign)
    read NCHW memory and return wrong values for channels_last tensors.
    Calling it again does nothing. Returns ``model``."""
    net = _unwrap(model)
    if getattr(net, '_channels_last_hooks', None):
        return model
    if isinstance(net, RepViT):
        parts = [net]
    elif isinstance(getattr(net, 'backbone', None), nn.Module):
        parts = [net.backbone] + ([net.neck] if isinstance(
            getattr(net, 'neck', None), nn.Module) else [])
    else:
        raise ValueError(f'{type(net).__name__} has no backbone to run in '
                         f'channels_last.')
    for part in parts:
        part.to(memory_format=torch.channels_last)
    net._channels_last_hooks = [
        parts[0].register_forward_pre_hook(_to_channels_last),
        parts[-1].register_forward_hook(_to_contiguous)]
    return model


@HOOKS.register_module()
class FuseModelHook(Hook):
    """Fuse the model right before testing, after its checkpoint loaded
    (what ``tools/test.py --fuse`` adds): :func:`fuse_model` with
    ``channels_last``. Only testing; training and validation are left
    alone."""

    priority = 'VERY_HIGH'

    def __init__(self, channels_last: bool = False):
        self.channels_last = channels_last

    def before_test(self, runner) -> None:
        fuse_model(runner.model, self.channels_last)


# --------------------------------------------------------------- checkpoints
def repvit_backbone_cfg(cfg) -> dict:
    """The ``model.backbone`` of a config; raises if it is not a RepViT."""
    backbone = cfg.model.get('backbone', {})
    if backbone.get('type') not in ('RepViT', RepViT):
        raise ValueError(
            f'The config\'s model.backbone is {backbone.get("type")!r}, not '
            f'RepViT: mmrepvit fuses and exports RepViT models only.')
    return backbone


def build_model(config) -> nn.Module:
    """Build the model of an MMDetection / MMSegmentation config (a path or
    a :class:`~mmengine.config.Config`) without its pretrained weights, in
    eval mode, SyncBN turned into BN; its backbone must be a RepViT."""
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope
    cfg = config if isinstance(config, Config) else Config.fromfile(config)
    repvit_backbone_cfg(cfg)
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    cfg.model.pop('pretrained', None)
    cfg.model.backbone.init_cfg = None
    # SyncBN (the paper configs) computes what BN does in eval mode, and
    # PyTorch's SyncBatchNorm does not run on CPU tensors.
    return revert_sync_batchnorm(MODELS.build(cfg.model)).eval()


def load_weights(model: nn.Module, checkpoint: str,
                 contents: Optional[dict] = None) -> dict:
    """Read ``checkpoint`` safely (:func:`mmrepvit.read_checkpoint`: clear
    errors for missing, corrupted or unsafe files) and load its state dict
    into ``model`` strictly, with MMEngine's loader; either form of RepViT
    weights loads. ``contents``: the file as read already (it is then not
    read again). Returns the checkpoint."""
    from mmengine.runner.checkpoint import load_state_dict

    from .checkpoint import (detect_layout, extract_state_dict, is_fused,
                             is_unfused, read_checkpoint)
    ckpt = read_checkpoint(checkpoint) if contents is None else contents
    source = f'checkpoint {checkpoint!r}'
    state = extract_state_dict(ckpt, source=source)
    own = model.state_dict()
    if own and not own.keys() & state.keys():
        bare = (detect_layout(state) == 'timm' or is_fused(state)
                or is_unfused(state))
        raise ValueError(
            f'No tensor of {source} matches the {type(model).__name__}: its '
            f'keys look like {list(state)[:3]}, the model\'s like '
            f'{list(own)[:3]}.' + (
                ' It holds a bare RepViT backbone, not a whole model: give '
                'it to the backbone config as init_cfg=dict(type='
                '"Pretrained", checkpoint=...), or export it with '
                'tools/deploy/export_onnx.py ARCH_OR_CONFIG CKPT OUT.onnx '
                '--backbone-only.' if bare else ''))
    load_state_dict(model, state, strict=True)
    return ckpt


def is_dense_model_state(state: Dict[str, torch.Tensor]) -> bool:
    """Whether a state dict is a whole detector or segmentor's (a neck or
    dense heads beside the backbone), not a backbone's or a classifier's."""
    return any(k.startswith(('neck.', 'decode_head.', 'auxiliary_head.',
                             'rpn_head.', 'roi_head.', 'bbox_head.'))
               for k in state)


def fuse_checkpoint(config, checkpoint: str, out: str,
                    check_size: Tuple[int, int] = (256, 320)) -> float:
    """Write ``checkpoint`` (of the model ``config`` builds) in fused form to
    ``out``, keeping its ``meta``, after checking on a random input of
    ``check_size`` that the fused backbone computes what the original does.
    Returns the maximum relative difference of the backbone outputs.

    Raises:
        ValueError: the checkpoint is fused already.
        RuntimeError: the outputs differ by more than 1e-4 relative
            (nothing is written).
    """
    from mmengine.config import Config
    cfg = copy.deepcopy(config) if isinstance(config, Config) else \
        Config.fromfile(config)
    # Built in training form: only a fused checkpoint then switches it to
    # the deploy form (a deploy=True config fuses any checkpoint on load).
    cfg.model.backbone.deploy = False
    model = build_model(cfg)
    ckpt = load_weights(model, checkpoint)
    backbones = _repvits(model)
    if all(b.deploy for b in backbones):
        raise ValueError(f'{checkpoint} is fused already.')
    x = torch.randn(1, backbones[0].in_channels, *check_size,
                    generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = model.backbone(x)
        switch_to_deploy(model)
        after = model.backbone(x)
    err = max(_rel_diff(a.numpy(), b.numpy()) for b, a in zip(before, after))
    if err > 1e-4:
        raise RuntimeError(f'fusion changed the backbone output by {err:.2e} '
                           f'relative (expected float rounding, < 1e-4); '
                           f'nothing written.')
    meta = dict(ckpt.get('meta', {}), mmrepvit_deploy=True)
    torch.save({'meta': meta, 'state_dict': model.state_dict()}, out)
    return err


# ---------------------------------------------------------------------- ONNX
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


class DetectorFeatures(nn.Module):
    """Image batch -> the backbone + neck features of a detector (or of a
    segmentor with a neck)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return tuple(self.model.extract_feat(x))


class SegmentorLogits(nn.Module):
    """Image batch -> per-pixel logits at the input size (what mmseg's
    ``EncoderDecoder`` computes before cropping padding), or their arg-max
    label map."""

    def __init__(self, model, labels: bool):
        super().__init__()
        self.model = model
        self.labels = labels

    def forward(self, x):
        logits = self.model.decode_head(self.model.extract_feat(x))
        logits = F.interpolate(logits, size=x.shape[2:], mode='bilinear',
                               align_corners=self.model.align_corners)
        return logits.argmax(1) if self.labels else logits


def onnx_part(model: nn.Module, part: Optional[str] = None) -> str:
    """What :func:`export_onnx` exports of ``model`` for ``part`` (None: the
    whole of what the model is): 'backbone', 'features' (backbone + neck of
    a detector, or of a segmentor that has a neck) or 'segmentor'. Raises
    ValueError, naming what can be exported, for anything else."""
    if part is not None and part not in PARTS:
        raise ValueError(f'part must be one of {PARTS} or None, got '
                         f'{part!r}.')
    net = _unwrap(model)
    if isinstance(net, RepViT):
        kind = 'backbone'
    elif hasattr(net, 'decode_head') and hasattr(net, 'extract_feat'):
        kind = 'segmentor'
    elif hasattr(net, 'extract_feat') and hasattr(net, 'neck'):
        kind = 'features'
    else:
        kind = None
    if part == 'backbone' and isinstance(getattr(net, 'backbone', None),
                                         RepViT):
        kind = part
    elif part == 'features' and kind == 'segmentor' and getattr(
            net, 'with_neck', False):
        kind = part
    elif kind is None or (part is not None and part != kind):
        raise ValueError(
            f'Cannot export {"part " + repr(part) + " of " if part else ""}a '
            f'{type(net).__name__}: export_onnx handles a bare RepViT '
            f'(part="backbone"), an MMDetection detector with a RepViT '
            f'backbone and a neck (part="features": backbone + neck, or '
            f'"backbone") and an MMSegmentation EncoderDecoder '
            f'(part="segmentor": the whole model, "features" if it has a '
            f'neck, or "backbone").')
    _repvits(net)
    return kind


@contextlib.contextmanager
def _dynamic_upsampling(model: nn.Module):
    """Make mmseg's ``Upsample`` export with dynamic sizes while inside.

    It computes its output size as ``int(size * scale_factor)``, which the
    ONNX tracer records as a constant, so a graph exported at one size gives
    wrong outputs at another. For integer scale factors, interpolating with
    ``scale_factor`` is the same computation (same output size, same
    sampling grid) and exports as a Resize by scales."""
    try:
        from mmseg.models.utils import Upsample
    except ImportError:   # no mmseg, no mmseg Upsample to fix
        yield
        return
    patched = []
    for m in model.modules():
        if isinstance(m, Upsample) and not m.size and isinstance(
                m.scale_factor, float) and m.scale_factor.is_integer():
            m.forward = lambda x, m=m: F.interpolate(
                x, scale_factor=m.scale_factor, mode=m.mode,
                align_corners=m.align_corners)
            patched.append(m)
    try:
        yield
    finally:
        for m in patched:
            del m.forward


def _deploy_wrapper(net: nn.Module, kind: str, labels: bool) -> nn.Module:
    """The module to export: a fused copy of ``net`` (or of the part)
    that maps the image batch to the outputs, in eval mode."""
    net = copy.deepcopy(net).cpu().float().eval()
    switch_to_deploy(net)
    if kind == 'backbone':
        wrapper = net if isinstance(net, RepViT) else net.backbone
    elif kind == 'features':
        wrapper = DetectorFeatures(net)
    else:
        wrapper = SegmentorLogits(net, labels)
    return wrapper.eval()


def _names_and_axes(wrapper, kind, labels, x):
    """Output names, and the dynamic axes of the input and outputs."""
    if kind == 'segmentor':
        names = ['labels' if labels else 'logits']
    elif kind == 'backbone':   # by stage, as out_indices counts them
        names = [f'stage{i}' for i in wrapper.out_indices]
    else:
        with torch.no_grad():
            names = [f'level{i}' for i in range(len(wrapper(x)))]
    image = {0: 'batch', 2: 'height', 3: 'width'}
    dynamic = {'input': image}
    for n in names:
        dynamic[n] = ({0: 'batch', 1: 'height', 2: 'width'} if n == 'labels'
                      else image if n == 'logits' else
                      {0: 'batch', 2: f'{n}_height', 3: f'{n}_width'})
    return names, dynamic


def _rel_diff(ours, reference) -> float:
    """Maximum absolute difference relative to the largest magnitude of
    ``reference`` (numpy arrays)."""
    import numpy as np
    scale = float(np.abs(reference).max()) or 1.0
    return float(np.abs(ours.astype(np.float64) - reference).max()) / scale


def _label_diff(ort_labels, logits) -> float:
    """Relative size of the logit margin that onnxruntime's label map
    contradicts: 0 when the label maps agree, float rounding where two
    classes' logits tie, large where a label is really wrong."""
    import numpy as np
    theirs = np.take_along_axis(logits, ort_labels[:, None], 1)
    margin = float((logits.max(1, keepdims=True) - theirs).max())
    return margin / (float(np.abs(logits).max()) or 1.0)


def ort_session(path: str, threads: Optional[int] = None):
    """An onnxruntime CPU session for ``path`` with every graph optimisation
    and ``threads`` intra-op threads (onnxruntime's default: one per core)."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.graph_optimization_level = \
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(path, options,
                                providers=['CPUExecutionProvider'])


def export_onnx(model: nn.Module, out: str,
                shape: Tuple[int, int] = (512, 512),
                part: Optional[str] = None, labels: bool = False,
                opset: int = 17,
                check_shapes: Optional[Sequence[Tuple[int, ...]]] = None,
                tolerance: float = 1e-4) -> OnnxReport:
    """Export the deploy form of ``model`` to ONNX and prove it computes what
    PyTorch computes.

    ``part`` (by default the whole of what the model is): ``'backbone'``
    (a bare RepViT, or the RepViT inside a model) gives one output per
    stage; ``'features'`` (a detector, or a segmentor with a neck) the
    backbone + neck pyramid;
    ``'segmentor'`` (an mmseg EncoderDecoder) the logits at the input size,
    or with ``labels`` the arg-max label map (int64). The input ``input`` is
    the image batch as the model's data preprocessor hands it to the
    backbone (normalised, N x 3 x H x W float32); its batch, height and
    width are dynamic.

    The model is not changed: a fused copy is exported with PyTorch's
    TorchScript-based exporter at ``opset`` (``dynamo=False``; the dynamo
    exporter of torch 2.13 emits opset 18 and could not convert this graph
    to 17). The file is checked with ``onnx.checker`` and run in
    onnxruntime on random inputs of ``check_shapes`` (default: 1 x 3 x
    ``shape`` and a second batch and size, to prove the dynamic axes); the
    maximum relative difference to PyTorch (for label maps: the logit margin
    a differing label contradicts, relative to the largest logit) must stay
    within ``tolerance``, else nothing is written and :class:`ParityError`
    carries the numbers.
    """
    import onnx
    net = _unwrap(model)
    kind = onnx_part(net, part)
    if labels and kind != 'segmentor':
        raise ValueError(f'labels=True (--labels) is for a whole segmentor; '
                         f'this export is the {kind}.')
    wrapper = _deploy_wrapper(net, kind, labels)
    in_channels = _repvits(wrapper)[0].in_channels
    height, width = shape
    if check_shapes is None:
        check_shapes = [(1, in_channels, height, width),
                        (2, in_channels, height + 32, width + 64)]
    generator = torch.Generator().manual_seed(0)
    inputs = [torch.randn(*s, generator=generator) for s in check_shapes]
    names, dynamic = _names_and_axes(wrapper, kind, labels, inputs[0])

    tmp = f'{out}.tmp'
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    try:
        with warnings.catch_warnings(), _dynamic_upsampling(wrapper):
            # Shape checks on the channel axis trace as constants, which is
            # right; the parity check at a second size tests what is not.
            warnings.simplefilter('ignore', torch.jit.TracerWarning)
            warnings.simplefilter('ignore', DeprecationWarning)
            torch.onnx.export(wrapper, (inputs[0], ), tmp, dynamo=False,
                              opset_version=opset, input_names=['input'],
                              output_names=names, dynamic_axes=dynamic)
        onnx.checker.check_model(tmp, full_check=True)
        diffs = _parity(wrapper, tmp, inputs, kind == 'segmentor' and labels)
        report = OnnxReport(kind, opset, names, diffs)
        worst = max(diffs.values())
        if not worst <= tolerance:
            raise ParityError(
                f'onnxruntime differs from PyTorch by {worst:.2e} relative '
                f'(tolerance {tolerance:.0e}; per input shape: '
                f'{_format(diffs)}); {out} not written.', report)
        os.replace(tmp, out)
    finally:
        if osp.exists(tmp):
            os.remove(tmp)
    return report


def _parity(wrapper, path, inputs, labels) -> Dict[Tuple[int, ...], float]:
    session = ort_session(path)
    diffs = {}
    for x in inputs:
        with torch.no_grad():
            if labels:
                wrapper.labels = False
                reference = [wrapper(x)]
                wrapper.labels = True
            else:
                reference = wrapper(x)
                reference = [reference] if torch.is_tensor(reference) \
                    else list(reference)
        ours = session.run(None, {'input': x.numpy()})
        if labels:
            diffs[tuple(x.shape)] = _label_diff(ours[0],
                                                reference[0].numpy())
        else:
            diffs[tuple(x.shape)] = max(
                _rel_diff(o, r.numpy()) for o, r in zip(ours, reference))
    return diffs


def _format(diffs) -> str:
    return ', '.join(f'{"x".join(map(str, s))}: {d:.2e}'
                     for s, d in diffs.items())
