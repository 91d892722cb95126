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

import torch
import torch.nn.functional as F
from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from mmrepvit.apis import OnnxRunner, check_onnx_file, unwrap_model
from mmrepvit.apis.runtime import BACKENDS
from mmrepvit.utils.checks import check_config
from mmrepvit.utils.config import (
    add_common_args,
    checked,
    config_file,
    tool_config,
)


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', type=config_file,
                        help='test config file path')
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
    runner = build_runner(parser, args)
    model = unwrap_model(runner.model)
    try:
        part, outputs = check_onnx_file(args.onnx, model, args.config)
    except ValueError as e:
        parser.error(str(e))
    labels = outputs[0][0] == 'labels'
    if labels and model.decode_head.out_channels == 1:
        parser.error(f'{args.onnx} (outputs labels): a one-channel (sigmoid) '
                     f'segmentor\'s label map cannot be tested; export '
                     f'logits.')
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
