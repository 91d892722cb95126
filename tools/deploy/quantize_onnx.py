#!/usr/bin/env python
# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
"""Quantize an exported ONNX model to INT8, checked on held-out images.

    python tools/deploy/quantize_onnx.py CONFIG MODEL.onnx OUT.onnx \\
        [--calib 32] [--held-out 8] [--max-error 0.15] [--keep-float auto]

MODEL.onnx is a file written by tools/deploy/export_onnx.py with CONFIG (a
backbone, a detector's backbone + neck or a whole segmentor; a file whose
outputs do not fit CONFIG's model is refused, exit status 2). It is
quantized statically with onnxruntime (QDQ format: weights int8 per output
channel, activations uint8, ranges calibrated on the first --calib images
of CONFIG's training set, drawn through its test pipeline and data
preprocessor as the model sees them), then compared with MODEL.onnx on the
first --held-out images of CONFIG's test set: the relative error of each
output (norm of the difference over the norm of the FP32 output) and, for
a segmentor, the share of label-map pixels that change. Above --max-error
or --max-label-change nothing is written and the exit status is 1.

--keep-float auto measures each quantized node's own cost (the output error
of the model with that node alone quantized) and keeps the costliest in
float until the limits hold (at most --max-keep nodes); it prints the
nodes it kept and their costs. OUT.onnx runs in onnxruntime and OpenVINO
(tools/deploy/test_onnx.py measures its box AP / mIoU).
"""
import argparse
import os.path as osp
import sys

from mmrepvit.apis import (
    AgreementError,
    build_model,
    check_onnx_file,
    preprocessed_images,
    quantize_onnx,
)
from mmrepvit.apis.quantize import METHODS
from mmrepvit.utils.config import (
    ConfigOptionsAction,
    check_output,
    checked,
    config_file,
    load_config,
)


def parse_args():
    count, positive = (checked(kind, lambda v: v > 0, 'a number above zero')
                       for kind in (int, float))
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='\n'.join(__doc__.splitlines()[2:]))
    parser.add_argument('config', type=config_file,
                        help='the config MODEL.onnx was exported '
                        'with (file or mmdet::/mmseg:: path)')
    parser.add_argument('model', help='the float .onnx file')
    parser.add_argument('out', help='the INT8 .onnx file to write')
    parser.add_argument('--calib', type=count, default=32,
                        help='calibration images (training set)')
    parser.add_argument('--held-out', type=count, default=8,
                        help='images to check the agreement on (test set)')
    parser.add_argument('--max-error', type=positive, default=0.15,
                        help='largest relative error of an output')
    parser.add_argument('--max-label-change', type=positive,
                        default=0.02, help='segmentors: largest share of '
                        'label-map pixels that change')
    parser.add_argument('--keep-float', nargs='+', default=['none'],
                        metavar='NODE', help="'auto' (measure and keep the "
                        "costliest nodes in float while a limit is passed), "
                        "'none' (default) or node names")
    parser.add_argument('--max-keep', type=count, default=8,
                        help='with --keep-float auto: most nodes kept')
    parser.add_argument('--method', choices=list(METHODS), default='minmax',
                        help='calibration method')
    parser.add_argument('--no-per-channel', action='store_true',
                        help='one weight scale per tensor')
    parser.add_argument('--op-types', nargs='+', metavar='TYPE',
                        help='quantize only these node types, e.g. Conv '
                        '(faster in OpenVINO; default: all onnxruntime '
                        'quantizes)')
    parser.add_argument('--reduce-range',
                        action=argparse.BooleanOptionalAction,
                        help='7-bit weights: needed on x86 CPUs without '
                        'VNNI, where uint8 x int8 products saturate '
                        '(default: on where this CPU needs it)')
    parser.add_argument('--cfg-options', nargs='+', action=ConfigOptionsAction,
                        help='override settings in the config (data paths)')
    return parser, parser.parse_args()


def main():
    parser, args = parse_args()
    keep = {('none', ): None, ('auto', ): 'auto'}.get(
        tuple(args.keep_float), args.keep_float)
    if not osp.isfile(args.model):
        parser.error(f'ONNX file {args.model!r} does not exist.')
    check_output(parser, args.out, args.model)
    cfg = load_config(args.config, args.cfg_options)
    # calibrating on another config's data gives the wrong ranges
    try:
        check_onnx_file(args.model, build_model(cfg), args.config)
    except ValueError as e:
        parser.error(str(e))
    calibration = preprocessed_images(cfg, args.calib, 'train')
    held_out = preprocessed_images(cfg, args.held_out, 'test')
    print(f'calibration: {len(calibration)} training images; agreement: '
          f'{len(held_out)} test images', flush=True)
    try:
        report = quantize_onnx(
            args.model, args.out, calibration, held_out,
            max_error=args.max_error,
            max_label_change=args.max_label_change, keep_float=keep,
            max_keep=args.max_keep, per_channel=not args.no_per_channel,
            method=args.method, reduce_range=(
                'auto' if args.reduce_range is None else args.reduce_range),
            op_types=args.op_types)
    except AgreementError as e:
        show(e.report)
        print(f'REFUSED: {e}', file=sys.stderr)
        sys.exit(1)
    except ValueError as e:   # a node name or op type that is not there
        parser.error(str(e))
    show(report)
    print(f'wrote {args.out}')


def show(report):
    print('weights: ' + ('7-bit (reduce_range), as x86 CPUs without VNNI '
                         'need' if report.reduce_range else '8-bit'))
    for name, error in report.errors.items():
        print(f'{name}: relative error {error:.2%}')
    if report.label_change is not None:
        print(f'label map: {report.label_change:.2%} of pixels change')
    cost = dict(report.sensitivity)
    for node in report.kept_float:
        print(f'kept in float: {node}' + (
            f' (alone quantized, it costs {cost[node]:.2%} relative error)'
            if node in cost else ' (as asked)'))
    if report.sensitivity:
        print('costliest nodes (relative error with that node alone '
              'quantized): ' + ', '.join(f'{n} {c:.2%}' for n, c in
                                         report.sensitivity[:10]))


if __name__ == '__main__':
    main()
