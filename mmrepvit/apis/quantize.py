# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
"""Static INT8 quantization of exported ONNX files with onnxruntime, checked
on held-out images; the costliest nodes can stay in float."""
import copy
import os
import os.path as osp
import shutil
import tempfile
from types import SimpleNamespace
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np
from mmengine.config import Config

from ..utils.compat import calibration_cache_kwargs
from .runtime import OnnxRunner, saturates_int8

#: Calibration methods: onnxruntime's names.
METHODS = {'minmax': 'MinMax', 'entropy': 'Entropy',
           'percentile': 'Percentile'}


class QuantizeReport(NamedTuple):
    """What :func:`quantize_onnx` measured."""
    calibration: int          # calibration images
    held_out: int             # images the agreement was measured on
    errors: Dict[str, float]  # output name -> relative error
    label_change: Optional[float]   # share of label-map pixels that change
    kept_float: List[str]     # nodes left in float
    # (node, error with it alone quantized), worst first; 'auto' only
    sensitivity: List[Tuple[str, float]]
    reduce_range: bool = False   # 7-bit weights


class AgreementError(RuntimeError):
    """The INT8 model disagrees with the float one beyond the limits."""

    def __init__(self, message: str, report: QuantizeReport):
        super().__init__(message)
        self.report = report


def preprocessed_images(cfg: Config, num: int, split: str = 'train',
                        skip: int = 0) -> List[np.ndarray]:
    """Load dataset images through the test pipeline and data preprocessor.

    Args:
        cfg (Config): A detector or segmentor config.
        num (int): How many images.
        split (str): ``'train'`` (calibration) or ``'test'`` (held-out).
            Defaults to ``'train'``.
        skip (int): Images to skip first. Defaults to 0.

    Returns:
        list[np.ndarray]: ``num`` images (1 x 3 x H x W float32), fewer if
        the dataset has fewer.
    """
    import torch
    from mmengine.dataset import pseudo_collate
    from mmengine.registry import DATASETS, MODELS, init_default_scope

    from ..utils.checks import leaf_datasets
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    dataset = copy.deepcopy(cfg[f'{split}_dataloader'].dataset)
    for _, leaf in leaf_datasets(dataset, split):
        leaf.pipeline = cfg.test_dataloader.dataset.pipeline
        leaf.test_mode = True   # no filtering, no random augmentation
    dataset = DATASETS.build(dataset)
    preprocessor = MODELS.build(cfg.model.data_preprocessor)
    images = []
    with torch.no_grad():
        for i in range(skip, min(skip + num, len(dataset))):
            data = preprocessor(pseudo_collate([dataset[i]]), False)
            images.append(data['inputs'].float().numpy())
    return images


def _agreement(names, references, outputs):
    """Relative error per float output, and the share of pixels whose
    ``labels`` (or arg-max ``logits``) change (None without them)."""
    errors = {}
    for i, name in enumerate(names if references else []):
        if references[0][i].dtype.kind != 'f':
            continue   # a label map: the label change measures it
        diff = sum(float(np.square(r[i] - o[i]).sum())
                   for r, o in zip(references, outputs))
        norm = sum(float(np.square(r[i]).sum()) for r in references)
        errors[name] = (diff / (norm or 1.0)) ** 0.5
    if not references or not {'labels', 'logits'} & set(names):
        return errors, None
    i = names.index('labels' if 'labels' in names else 'logits')
    pick = (lambda a: a) if names[i] == 'labels' else (lambda a: a.argmax(1))
    changed = sum(int((pick(r[i]) != pick(o[i])).sum())
                  for r, o in zip(references, outputs))
    return errors, changed / sum(pick(r[i]).size for r in references)


def _quantizer(model, tmp, calibration, keep, per_channel, method,
               reduce_range, op_types):
    """``quantize(out, exclude, only)``: write ``model`` as QDQ (ranges kept
    in ``tmp``). Refuses node names and op types that the pre-processed
    ``model`` lacks."""
    import onnx
    from onnxruntime import quantization as q
    pre, cache = osp.join(tmp, 'pre.onnx'), osp.join(tmp, 'ranges')
    # the symbolic shape inference fails on the segmentor's dynamic Resize
    q.quant_pre_process(model, pre, skip_symbolic_shape=True)
    graph = onnx.load(pre).graph
    nodes = [n.name for n in graph.node]
    unknown = [k for k in keep if k not in nodes]
    if unknown:
        raise ValueError(
            f'No node named {", ".join(unknown)} in {model} after '
            f'onnxruntime\'s pre-processing (its nodes: {", ".join(nodes[:5])}'
            f', ...); --keep-float auto measures and names sensitive ones.')
    types = sorted({n.op_type for n in graph.node})
    absent = [t for t in op_types or () if t not in types]
    if absent:
        raise ValueError(
            f'No node of type {", ".join(absent)} in {model}: op_types '
            f'are ONNX operator types, spelt as ONNX does (its types: '
            f'{", ".join(types)}).')

    def quantize(out, exclude=(), only=None):
        feeds = iter([{'input': x} for x in calibration])
        reader = SimpleNamespace(get_next=lambda: next(feeds, None))
        q.quantize_static(
            pre, out, reader, quant_format=q.QuantFormat.QDQ,
            per_channel=per_channel, reduce_range=reduce_range,
            activation_type=q.QuantType.QUInt8,
            weight_type=q.QuantType.QInt8, nodes_to_exclude=list(exclude),
            op_types_to_quantize=op_types and list(op_types),
            nodes_to_quantize=only, **calibration_cache_kwargs(cache),
            calibrate_method=getattr(q.CalibrationMethod, METHODS[method]))
    return quantize


def _quantized_nodes(int8: str) -> List[str]:
    """Nodes of a QDQ model that take a dequantized input, in graph order."""
    import onnx
    nodes = onnx.load(int8).graph.node
    dequantized = {o for n in nodes if n.op_type == 'DequantizeLinear'
                   for o in n.output}
    return [n.name for n in nodes if dequantized & set(n.input)
            and n.op_type not in ('QuantizeLinear', 'DequantizeLinear')]


def _problems(report, max_error, max_label_change) -> List[str]:
    problems = [f'{name}: relative error {e:.2%} > {max_error:.2%}'
                for name, e in report.errors.items()
                if max_error is not None and e > max_error]
    if max_label_change is not None and report.label_change is not None \
            and report.label_change > max_label_change:
        problems.append(f'{report.label_change:.2%} of label-map pixels '
                        f'change > {max_label_change:.2%}')
    return problems


def quantize_onnx(model: str, out: str, calibration: Sequence[np.ndarray],
                  held_out: Optional[Sequence[np.ndarray]] = None,
                  max_error: Optional[float] = None,
                  max_label_change: Optional[float] = None,
                  keep_float: Union[str, Sequence[str], None] = None,
                  max_keep: int = 8, per_channel: bool = True,
                  method: str = 'minmax',
                  reduce_range: Union[bool, str] = 'auto',
                  op_types: Optional[Sequence[str]] = None
                  ) -> QuantizeReport:
    """Quantize an ONNX file to INT8 and measure it against the float one.

    See docs/deploy.md for the method and the ``'auto'`` node choice.

    Args:
        model (str): The float ``.onnx`` file.
        out (str): The INT8 ``.onnx`` file to write.
        calibration (Sequence[np.ndarray]): Calibration inputs.
        held_out (Sequence[np.ndarray], optional): Other inputs to measure
            the agreement on. Defaults to None (no measurement).
        max_error (float, optional): Largest accepted relative error of a
            float output. Defaults to None (no limit).
        max_label_change (float, optional): Largest accepted share of
            label-map pixels that change. Defaults to None (no limit).
        keep_float (str | Sequence[str], optional): Node names to leave in
            float, or ``'auto'``: keep the costliest nodes in float while a
            limit is passed. Defaults to None (quantize all it can).
        max_keep (int): Most nodes ``'auto'`` keeps. Defaults to 8.
        per_channel (bool): Per-channel weight scales. Defaults to ``True``.
        method (str): Calibration: ``'minmax'``, ``'entropy'`` or
            ``'percentile'``. Defaults to ``'minmax'``.
        reduce_range (bool | str): 7-bit weights, for x86 CPUs without
            VNNI, whose uint8 x int8 products saturate with 8-bit ones (a
            file quantized without it gives wrong outputs there).
            Defaults to ``'auto'``: where this CPU needs it
            (:func:`~mmrepvit.apis.runtime.saturates_int8`).
        op_types (Sequence[str], optional): Quantize only nodes of these
            types, e.g. ``['Conv']``. Defaults to None (all it can).

    Returns:
        QuantizeReport: The measured agreement and the nodes kept in float.

    Raises:
        AgreementError: A limit is passed; nothing is written.
        ValueError: An unknown method, node or op type, or nothing to
            quantize; nothing is written.
    """
    if method not in METHODS:
        raise ValueError(f'method must be one of {list(METHODS)}, got '
                         f'{method!r}.')
    if reduce_range == 'auto':
        reduce_range = saturates_int8()
    auto = keep_float == 'auto'
    keep = [] if auto or keep_float is None else list(keep_float)
    held_out = list(held_out or [])
    fp32 = OnnxRunner(model)
    references = [fp32(x) for x in held_out]
    sensitivity = []
    with tempfile.TemporaryDirectory() as tmp:
        int8 = osp.join(tmp, 'int8.onnx')
        quantize = _quantizer(model, tmp, calibration, keep, per_channel,
                              method, reduce_range, op_types)
        while True:
            quantize(int8, exclude=keep)
            quantized = _quantized_nodes(int8)
            if not quantized:
                raise ValueError(
                    f'onnxruntime quantized no node of {model}'
                    + (f' of the types {", ".join(op_types)}' if op_types
                       else '') + ', so nothing would run in INT8; '
                    'choose other op_types (e.g. Conv).')
            runner = OnnxRunner(int8)
            report = QuantizeReport(
                len(calibration), len(held_out), *_agreement(
                    fp32.output_names, references,
                    [runner(x) for x in held_out]), list(keep), sensitivity,
                reduce_range)
            problems = _problems(report, max_error, max_label_change)
            if not (auto and problems and len(keep) < max_keep):
                break
            if not sensitivity:
                sensitivity = _sensitivity(quantize, quantized, fp32,
                                           calibration[:2], tmp)
            keep.append(sensitivity[len(keep)][0])
        if held_out and problems:
            kept = f' (kept in float: {", ".join(keep)})' if keep else ''
            raise AgreementError(
                f'The INT8 model disagrees with the float one on '
                f'{len(held_out)} held-out images: {"; ".join(problems)}'
                f'{kept}; {out} not written. Keep sensitive nodes in float '
                f'(--keep-float auto), calibrate on more images or with '
                f'another --method, or accept more error.', report)
        os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
        shutil.move(int8, out)
    return report


def _sensitivity(quantize, nodes, fp32, images, tmp):
    """(node, largest error with it alone quantized) per node, worst first."""
    only = osp.join(tmp, 'only.onnx')
    references = [fp32(x) for x in images]
    costs = []
    for node in nodes:
        quantize(only, only=[node])
        runner = OnnxRunner(only)
        errors, _ = _agreement(runner.output_names, references,
                               [runner(x) for x in images])
        costs.append((node, max(errors.values(), default=0.0)))
    return sorted(costs, key=lambda c: -c[1])
