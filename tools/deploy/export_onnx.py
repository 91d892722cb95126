#!/usr/bin/env python
# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
"""Export a RepViT model in deploy form to ONNX, checked against PyTorch.

    python tools/deploy/export_onnx.py CONFIG CKPT OUT.onnx --shape H W

What is exported follows the config: a segmentor whole (image -> logits at
the input size; --labels: the label map), a detector's backbone + neck
(image -> pyramid features; the RoI heads need MMDeploy, see the README),
or with --backbone-only the bare backbone. CONFIG may also be a RepViT arch
name (m0_6, ..., m2_3) with an ImageNet, timm or backbone checkpoint.

The input is the image batch as the model's data preprocessor hands it to
the backbone (normalised, N x 3 x H x W); batch, height and width are
dynamic. The file is checked with onnx.checker and run in onnxruntime on
random inputs at --shape and at a second batch and size; the maximum
relative difference to PyTorch is printed, and above --tolerance nothing is
written and the exit status is 1. Either form of checkpoint (training or
fused) works.
"""
import argparse
import os.path as osp
import sys

from mmrepvit import RepViT
from mmrepvit.deploy import (ParityError, build_model, export_onnx,
                             load_weights)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='config file, or a RepViT arch name '
                        f'({", ".join(RepViT.arch_zoo)}) for a bare backbone')
    parser.add_argument('checkpoint')
    parser.add_argument('out', help='the .onnx file to write')
    parser.add_argument('--shape', type=int, nargs=2, default=(512, 512),
                        metavar=('H', 'W'), help='input height and width of '
                        'the export and of the first parity check')
    parser.add_argument('--opset', type=int, default=17)
    parser.add_argument('--backbone-only', action='store_true',
                        help='export only the RepViT backbone of CONFIG')
    parser.add_argument('--labels', action='store_true', help='segmentor: '
                        'output the label map (int64) instead of logits')
    parser.add_argument('--prefix', help='with an arch name: the key prefix '
                        'of the backbone in CHECKPOINT, e.g. backbone.')
    parser.add_argument('--tolerance', type=float, default=1e-4,
                        help='largest relative difference to PyTorch '
                        'accepted')
    args = parser.parse_args()

    if not osp.isfile(args.config) and args.config in RepViT.arch_zoo:
        model = RepViT(args.config)
        model.load_pretrained(args.checkpoint, prefix=args.prefix)
        part = 'backbone'
    else:
        if not osp.isfile(args.config):
            parser.error(f'{args.config!r} is neither a config file nor a '
                         f'RepViT arch ({", ".join(RepViT.arch_zoo)}).')
        model = build_model(args.config)
        load_weights(model, args.checkpoint)
        part = 'backbone' if args.backbone_only else None
    try:
        report = export_onnx(model, args.out, tuple(args.shape), part=part,
                             labels=args.labels, opset=args.opset,
                             tolerance=args.tolerance)
    except ParityError as e:
        print(f'REFUSED: {e}', file=sys.stderr)
        sys.exit(1)
    what = {'backbone': 'backbone', 'features': 'backbone + neck',
            'segmentor': 'whole segmentor'}[report.part]
    print(f'exported the {what} (opset {report.opset}, outputs '
          f'{", ".join(report.output_names)}) to {args.out}')
    for shape, diff in report.max_rel_diff.items():
        print(f'onnxruntime vs PyTorch, input {"x".join(map(str, shape))}: '
              f'max relative difference {diff:.2e}')


if __name__ == '__main__':
    main()
