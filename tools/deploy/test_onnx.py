#!/usr/bin/env python
# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
"""Test (evaluate) an exported ONNX model with the config's own metrics.

    python tools/deploy/test_onnx.py CONFIG CKPT MODEL.onnx \\
        [--backend onnxruntime|openvino] [--precision fp32|bf16] \\
        [--threads N] [--out metrics.json]

The config's test loop runs as in tools/test.py, with CKPT loaded, but the
part that tools/deploy/export_onnx.py exported is computed by MODEL.onnx
(FP32 or quantized) instead of PyTorch; the rest (the detector's heads, the
data preprocessor, the metric) runs in PyTorch. Which part follows the
file's outputs: logits or labels (a whole segmentor: its encode_decode),
level0..N (backbone + neck: extract_feat) or stageI (the backbone). For an
FP32 export the metrics equal tools/test.py's up to float rounding (see
docs/deploy.md); the difference is the cost of quantization or bf16.
"""
import argparse
import json
import logging
import os.path as osp
import re

import onnx
import torch
import torch.nn.functional as F
from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from mmrepvit.apis import OnnxRunner, unwrap_model
from mmrepvit.apis.runtime import BACKENDS
from mmrepvit.utils.checks import check_config
from mmrepvit.utils.config import add_common_args, checked, tool_config


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint of the whole model '
                        '(its heads run in PyTorch)')
    parser.add_argument('onnx', help='the file tools/deploy/export_onnx.py '
                        '(or quantize_onnx.py) wrote from this config')
    parser.add_argument('--backend', choices=list(BACKENDS),
                        default='onnxruntime')
    parser.add_argument('--precision', choices=['fp32', 'bf16'],
                        default='fp32', help='bf16: OpenVINO only, on a '
                        'CPU with AMX or AVX-512 BF16')
    parser.add_argument('--threads', type=checked(
        int, lambda v: v >= 1, 'an integer >= 1'), help='intra-op threads '
        'of the backend (default: one per core)')
    parser.add_argument('--out', help='write the metrics to this JSON file')
    add_common_args(parser)
    return parser


def onnx_outputs(proto) -> list:
    """(name, channels) of each output of the file (``onnx.ModelProto``);
    channels is None where the file leaves it dynamic or the output has no
    channel axis."""
    outputs = []
    for o in proto.graph.output:
        dims = o.type.tensor_type.shape.dim
        known = len(dims) == 4 and dims[1].HasField('dim_value')
        outputs.append((o.name, dims[1].dim_value if known else None))
    return outputs


def exported_part(outputs: list, model, config: str, path: str) -> str:
    """'segmentor', 'features' or 'backbone': what the file computes of
    ``model``, by its output names. Raises ValueError, naming the file's
    outputs and what the config's model expects, where they do not fit."""
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
        if names == ['labels'] and head.out_channels == 1:
            raise ValueError(f'{what}: a one-channel (sigmoid) segmentor\'s '
                             f'label map cannot be tested; export logits.')
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


def use_onnx(model, part: str, run: OnnxRunner, labels: bool) -> list:
    """Replace the exported part of ``model`` by ``run`` (on this instance
    only). Returns a one-item list counting the ONNX runs."""
    runs = [0]

    def onnx(inputs):
        runs[0] += 1
        outputs = run(inputs.detach().cpu().float().numpy())
        return [torch.from_numpy(o).to(inputs.device) for o in outputs]

    if part == 'features':
        model.extract_feat = lambda inputs: tuple(onnx(inputs))
    elif part == 'backbone':
        model.backbone.forward = lambda inputs: tuple(onnx(inputs))
    else:
        head = model.decode_head

        def encode_decode(inputs, batch_img_metas):
            (scores, ) = onnx(inputs)
            if labels:   # the arg-max of one-hot scores is the label
                scores = F.one_hot(scores, head.out_channels).permute(
                    0, 3, 1, 2).to(inputs.dtype)
            # the exported logits are at the input size, where mmseg
            # resizes to the size its decode head's predict_by_feat picks:
            # the same size (the resize is then the identity) or refused
            scores = head.predict_by_feat(scores, batch_img_metas)
            if scores.shape[2:] != inputs.shape[2:]:
                raise RuntimeError(
                    f'The segmentor resizes its logits to '
                    f'{tuple(scores.shape[2:])}, not to its input size '
                    f'{tuple(inputs.shape[2:])}, which the exported logits '
                    f'have; the ONNX model cannot stand in for it here.')
            return scores

        model.encode_decode = encode_decode
    return runs


class OnnxMetricsHook(Hook):
    """Print how the test ran and write the metrics to ``out`` (JSON)."""
    priority = 'LOWEST'

    def __init__(self, out, what: str, runs: list):
        self.out, self.what, self.runs = out, what, runs

    def after_test_epoch(self, runner, metrics=None):
        images = len(runner.test_dataloader.dataset)
        print_log(f'Tested {images} images with {self.what} ({self.runs[0]} '
                  f'ONNX runs in this process): '
                  f'{json.dumps(metrics, default=float)}', logger='current')
        if self.out and is_main_process():
            with open(self.out, 'w') as f:
                json.dump(metrics, f, indent=2, default=float)


def build_runner(parser, args):
    """The test runner of CONFIG with CKPT to load; usage errors exit 2."""
    if '://' not in args.checkpoint and not osp.isfile(args.checkpoint):
        parser.error(f'checkpoint {args.checkpoint!r} does not exist; give '
                     f'the one MODEL.onnx was exported from.')
    try:
        cfg = tool_config(args)
        cfg.load_from = args.checkpoint
        check_config(cfg, ['test_dataloader'])
    except (FileNotFoundError, ValueError) as e:
        parser.error(str(e))
    # refuse a checkpoint that leaves weights random (when the run loads it)
    cfg.custom_hooks = list(cfg.get('custom_hooks') or []) + [dict(
        type='RefuseUnfitCheckpointHook', checkpoint=args.checkpoint)]
    return (Runner.from_cfg(cfg) if 'runner_type' not in cfg else
            RUNNERS.build(cfg))


def main():
    parser = build_parser()
    args = parser.parse_args()
    try:
        run = OnnxRunner(args.onnx, args.backend, args.precision,
                         args.threads)
    except (FileNotFoundError, ValueError) as e:
        parser.error(str(e))
    except ImportError as e:
        parser.error(f'{e}: install {args.backend} (pip install '
                     f'{args.backend}) or choose another --backend.')
    outputs = onnx_outputs(onnx.load(args.onnx, load_external_data=False))
    runner = build_runner(parser, args)
    model = unwrap_model(runner.model)
    try:
        part = exported_part(outputs, model, args.config, args.onnx)
    except ValueError as e:
        parser.error(str(e))
    labels = outputs[0][0] == 'labels'
    if labels:
        print_log('A label map stands in for the logits: one-hot scores, '
                  'exact where the test pipeline keeps each image\'s size; '
                  'where it resizes, the labels are resized back instead of '
                  'the logits, which can move class borders by a pixel.',
                  logger='current', level=logging.WARNING)
    runs = use_onnx(model, part, run, labels)
    what = f'{args.onnx} ({part}) in {args.backend} ({args.precision})'
    runner.register_hook(OnnxMetricsHook(args.out, what, runs))
    runner.test()


if __name__ == '__main__':
    main()
