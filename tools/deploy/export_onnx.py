#!/usr/bin/env python
# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
"""Export a RepViT model in deploy form to ONNX, checked against PyTorch.

    python tools/deploy/export_onnx.py CONFIG CKPT OUT.onnx --shape H W

What is exported follows the config: a segmentor whole (image -> logits at
the input size; --labels: the label map), a detector's backbone + neck
(image -> pyramid features; the RoI heads need MMDeploy, see the README),
or with --backbone-only the bare backbone (from the whole model's checkpoint
or from a backbone checkpoint: ImageNet, timm, a backbone alone). CONFIG is
a config file or an mmdet::/mmseg:: path, or a RepViT arch name (m0_6, ...,
m2_3) with a backbone checkpoint; a whole detector's or segmentor's backbone
needs its config (its stage outputs), so its checkpoint is refused with an
arch name, --prefix or not. --prefix picks the backbone out of a checkpoint
that holds more (an mmpretrain classifier's: backbone.), with an arch name
or --backbone-only.

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

from mmengine.registry import MODELS

from mmrepvit import RepViT
from mmrepvit.apis import ParityError, export_onnx, repvit_backbone_cfg
from mmrepvit.apis.model import init_model
from mmrepvit.utils import extract_state_dict, read_checkpoint
from mmrepvit.utils.config import load_config

#: Top-level modules of a whole detector's or segmentor's state dict.
DENSE_PARTS = ('neck.', 'decode_head.', 'auxiliary_head.', 'rpn_head.',
               'roi_head.', 'bbox_head.')


def load_backbone(backbone_cfg: dict, ckpt: dict, checkpoint: str,
                  prefix=None):
    """The RepViT of ``backbone_cfg`` in deploy form, loaded with ``ckpt``
    (the file ``checkpoint``, read) through ``RepViT.load_pretrained``, the
    path ``init_cfg`` takes: training-form weights are fused on the way in."""
    model = MODELS.build(dict(backbone_cfg, deploy=True, init_cfg=None))
    model.load_pretrained(ckpt, prefix, source=checkpoint)
    return model.eval()


def image_size(text: str) -> int:
    """A --shape value: a positive int. RepViT pads every stride-2
    convolution, so any size exports (down to 1 x 1, one pixel per stage)."""
    try:
        size = int(text)
    except ValueError:
        size = 0
    if size < 1:
        raise argparse.ArgumentTypeError(
            f'H and W are positive integers, got {text!r}')
    return size


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='config file or mmdet::/mmseg:: path, '
                        'or a RepViT arch name '
                        f'({", ".join(RepViT.arch_zoo)}) for a bare backbone')
    parser.add_argument('checkpoint')
    parser.add_argument('out', help='the .onnx file to write')
    parser.add_argument('--shape', type=image_size, nargs=2,
                        default=(512, 512), metavar=('H', 'W'),
                        help='input height and width (positive) of the '
                        'export and of the first parity check')
    parser.add_argument('--opset', type=int, default=17,
                        help='ONNX opset (17 is tested)')
    parser.add_argument('--backbone-only', action='store_true',
                        help='export only the RepViT backbone of CONFIG')
    parser.add_argument('--labels', action='store_true', help='segmentor: '
                        'output the label map (int64) instead of logits')
    parser.add_argument('--prefix', help='with an arch name or '
                        '--backbone-only: the key prefix of the backbone in '
                        'CHECKPOINT, e.g. backbone. for an mmpretrain '
                        'classifier (a whole detector or segmentor: give its '
                        'config and --backbone-only, no prefix needed)')
    parser.add_argument('--tolerance', type=float, default=1e-4,
                        help='largest relative difference to PyTorch '
                        'accepted')
    return parser, parser.parse_args()


def read_config(parser, args):
    """The config CONFIG names, or None for an arch name; refuses (exit
    status 2) options that do not go with it."""
    is_config = osp.isfile(args.config) or '::' in args.config
    if not is_config and args.config not in RepViT.arch_zoo:
        parser.error(f'{args.config!r} is neither a config file nor a '
                     f'RepViT arch ({", ".join(RepViT.arch_zoo)}).')
    if args.labels and (not is_config or args.backbone_only):
        parser.error('--labels outputs the label map of a whole segmentor; '
                     'this export is the backbone (arch name or '
                     '--backbone-only).')
    if args.prefix and is_config and not args.backbone_only:
        parser.error('--prefix picks the backbone out of CHECKPOINT: it goes '
                     'with an arch name or --backbone-only (a whole model '
                     'loads its checkpoint as it is).')
    cfg = None
    if is_config:
        try:   # a pkg::path that does not exist; not an mmdet/mmseg config
            cfg = load_config(args.config)
        except (FileNotFoundError, ValueError) as e:
            parser.error(str(e))
        if args.labels and 'decode_head' not in cfg.model:
            parser.error(f'--labels outputs the label map of a whole '
                         f'segmentor; {args.config} is a {cfg.model.type}, '
                         f'exported as its backbone + neck.')
    return cfg


def load_model(parser, args, cfg):
    """What to export and its ``part``, loaded with CHECKPOINT (read once,
    after other backbones than RepViT are refused)."""
    if cfg is not None and not args.backbone_only:
        # the whole model, built in the deploy form that either form of
        # checkpoint loads into
        return init_model(cfg, args.checkpoint, deploy=True), None
    backbone = dict(type='RepViT', arch=args.config) if cfg is None else \
        repvit_backbone_cfg(cfg)
    ckpt = read_checkpoint(args.checkpoint)   # once, for every path below
    source = f'checkpoint {args.checkpoint!r}'
    state = extract_state_dict(ckpt, source=source)
    prefix = args.prefix
    if prefix:
        try:   # a prefix no key starts with is a usage error
            extract_state_dict(ckpt, prefix, source)
        except KeyError as e:
            parser.error(e.args[0])
    if cfg is None and any(k.startswith(DENSE_PARTS) for k in state):
        # Its backbone's stage outputs are set by its config (stage_ends,
        # out_indices), which an arch name does not know.
        parser.error(
            f'{args.checkpoint} holds a whole detector or segmentor: export '
            f'its backbone with its config, which sets the stage outputs it '
            f'was trained with (an arch name has only the default ones, with '
            f'--prefix or not): tools/deploy/export_onnx.py CONFIG '
            f'{args.checkpoint} {args.out} --backbone-only')
    if cfg is None or prefix or not any(k.startswith('backbone.')
                                        for k in state):
        # a bare backbone checkpoint (ImageNet, timm, a backbone alone), or
        # the one under --prefix, into the backbone the arch or the config
        # describes
        return load_backbone(backbone, ckpt, args.checkpoint,
                             prefix), 'backbone'
    return init_model(cfg, args.checkpoint, deploy=True,
                      contents=ckpt), 'backbone'


def main():
    parser, args = parse_args()
    cfg = read_config(parser, args)
    try:
        model, part = load_model(parser, args, cfg)
    except (OSError, ValueError, RuntimeError) as e:
        # a missing, broken or unfit checkpoint; one holding code
        parser.error(str(e))
    try:
        report = export_onnx(model, args.out, tuple(args.shape), part=part,
                             labels=args.labels, opset=args.opset,
                             tolerance=args.tolerance)
    except ParityError as e:
        print(f'REFUSED: {e}', file=sys.stderr)
        sys.exit(1)
    except OSError as e:   # OUT is a folder, or a file that is no ONNX
        parser.error(str(e))
    except Exception as e:   # torch's and onnx's own types
        if args.opset == parser.get_default('opset'):
            raise   # the tested opset: a bug to report, with its traceback
        parser.error(f'--opset {args.opset}: the export failed '
                     f'({str(e).splitlines()[0]}); the default opset '
                     f'{parser.get_default("opset")} is the tested one')
    what = {'backbone': 'backbone', 'features': 'backbone + neck',
            'segmentor': 'whole segmentor'}[report.part]
    print(f'exported the {what} (opset {report.opset}, outputs '
          f'{", ".join(report.output_names)}) to {args.out}')
    for shape, diff in report.max_rel_diff.items():
        print(f'onnxruntime vs PyTorch, input {"x".join(map(str, shape))}: '
              f'max relative difference {diff:.2e}')


if __name__ == '__main__':
    main()
