# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
"""Which config's model an exported ONNX file computes, told by its outputs
and by what :func:`export_onnx` recorded in it."""
import json
import re
from typing import List, Optional, Tuple

import torch.nn as nn

from .onnx_export import onnx_record


def _outputs(proto) -> List[Tuple[str, Optional[int]]]:
    """(name, channels) of each output; None where dynamic or no channels."""
    outputs = []
    for o in proto.graph.output:
        dims = o.type.tensor_type.shape.dim
        known = len(dims) == 4 and dims[1].HasField('dim_value')
        outputs.append((o.name, dims[1].dim_value if known else None))
    return outputs


def load_onnx(path: str):
    """The ``onnx.ModelProto`` of ``path`` (without external weights).

    Raises:
        ValueError: The file is not an ONNX model (protobuf reads some
            other bytes as an empty model: one without outputs is refused).
    """
    import onnx
    from google.protobuf.message import DecodeError
    try:
        proto, why = onnx.load(path, load_external_data=False), 'no outputs'
    except DecodeError as e:
        proto, why = None, e
    if proto is None or not proto.graph.output:
        raise ValueError(f'{path} is not an ONNX file ({why}); give the file '
                         f'tools/deploy/export_onnx.py wrote.')
    return proto


def exported_part(outputs: list, model: nn.Module, config: str,
                  path: str) -> str:
    """What an ONNX file of :func:`export_onnx` computes of a config's model,
    told by its output names and checked against the model.

    Args:
        outputs (list): The file's outputs: ``(name, channels)`` pairs,
            channels None where dynamic or absent.
        model (nn.Module): The config's model (unwrapped).
        config (str): The config, as errors name it.
        path (str): The file, as errors name it.

    Returns:
        str: ``'segmentor'``, ``'features'`` or ``'backbone'``.

    Raises:
        ValueError: The outputs do not fit the model (another kind, number
            of levels or stages, widths or classes), naming both.
    """
    names = [n for n, _ in outputs]
    what = f'{path} (outputs {", ".join(names)})'
    kind = type(model).__name__
    if names in (['logits'], ['labels']):
        head = getattr(model, 'decode_head', None)
        if head is None:
            raise ValueError(
                f'{what} is a whole segmentor, but the model of {config} '
                f'({kind}) has no decode_head. Give the config it was '
                f'exported from, or export this config\'s model with '
                f'tools/deploy/export_onnx.py.')
        part, expected = 'segmentor', names
        channels = [head.out_channels if names == ['logits'] else None]
    elif names and all(re.fullmatch(r'level\d+', n) for n in names):
        neck = getattr(model, 'neck', None)
        if neck is None or not hasattr(model, 'extract_feat'):
            raise ValueError(
                f'{what} is a backbone + neck, but the model of {config} '
                f'({kind}) has no neck. Give the config it was exported '
                f'from.')
        num = getattr(neck, 'num_outs', len(names))
        part, expected = 'features', [f'level{i}' for i in range(num)]
        channels = [getattr(neck, 'out_channels', None)] * num
    elif names and all(re.fullmatch(r'stage\d+', n) for n in names):
        backbone = getattr(model, 'backbone', None)
        if backbone is None or not hasattr(backbone, 'out_indices'):
            raise ValueError(f'{what} is a backbone, but the model of '
                             f'{config} ({kind}) has no RepViT backbone.')
        part = 'backbone'
        expected = [f'stage{i}' for i in backbone.out_indices]
        channels = list(getattr(backbone, 'out_channels', [None] * len(
            expected)))
    else:
        raise ValueError(f'{what} is not an export of '
                         f'tools/deploy/export_onnx.py: expected logits, '
                         f'labels, level0..N or stage0..N.')
    if names != expected:
        raise ValueError(f'{what} does not fit {config}, whose {kind} '
                         f'gives {", ".join(expected)}. Export the model of '
                         f'this config.')
    for (name, got), want in zip(outputs, channels):
        if got and want and got != want:
            raise ValueError(f'{what}: {name} has {got} channels, the '
                             f'{kind} of {config} {want}. Export the model '
                             f'of this config.')
    return part


def check_onnx_file(path: str, model: nn.Module,
                    config: str) -> Tuple[str, list]:
    """Check that an ONNX file of :func:`export_onnx` (or its INT8 form)
    was exported from a config's model: by its outputs
    (:func:`exported_part`) and by what the export recorded
    (:func:`onnx_record`; files without a record are matched by outputs).

    Args:
        path (str): The ``.onnx`` file.
        model (nn.Module): The config's model (unwrapped).
        config (str): The config, as errors name it.

    Returns:
        tuple[str, list]: The part and the file's outputs, as
        :func:`exported_part` takes and returns them.

    Raises:
        ValueError: The file is no ONNX file or was exported from another
            model, naming what differs.
    """
    proto = load_onnx(path)
    outputs = _outputs(proto)
    part = exported_part(outputs, model, config, path)
    props = {p.key: p.value for p in proto.metadata_props}
    recorded = json.loads(props.get('mmrepvit', '{}'))
    ours = onnx_record(model, part) if recorded else {}
    differ = [f'{k} {v} (the config\'s: {ours.get(k)})'
              for k, v in recorded.items() if v != ours.get(k)]
    if differ:
        raise ValueError(
            f'{path} (outputs {", ".join(n for n, _ in outputs)}) was '
            f'exported from another model than the {type(model).__name__} '
            f'of {config}: {"; ".join(differ)}. Give the config it was '
            f'exported from, or export the model of this config.')
    return part, outputs
