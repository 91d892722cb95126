#!/usr/bin/env python
# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
"""Parameters and multiply-accumulates of RepViT models and ResNet-50.

MMEngine's complexity analysis of ImageNet classifiers, detectors and
segmentors, in training and deploy form.

    # the ImageNet classifier, 1x3x224x224 (the paper's setting)
    python tools/analysis_tools/get_flops.py --arch m1_1 --deploy
    # all arches, both forms, against the paper (markdown table)
    python tools/analysis_tools/get_flops.py --arch m0_6 m0_9 m1_0 m1_1 \
        m1_5 m2_3 resnet50 --forms training deploy
    # a detector or segmentor (default input: 800x1333 for MMDetection
    # configs, 512x512 for MMSegmentation's), per-module breakdown
    python tools/analysis_tools/get_flops.py \
        configs/det/repvit_m1_1_maskrcnn.py --deploy --breakdown
    python tools/analysis_tools/get_flops.py \
        mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py

MACs count one multiply-add as one operation (MMEngine calls them "flops";
GFLOPs in the paper's sense are these GMACs). Detectors and segmentors are
counted as MMDetection's and MMSegmentation's get_flops.py count them: the
model's ``mode='tensor'`` forward on one image after the data preprocessor
(Mask R-CNN pads 800x1333 to 800x1344; its RoI heads run on the RPN's
proposals), with random weights.
"""
import argparse

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.analysis import parameter_count
from mmengine.analysis.print_helper import complexity_stats_table
from mmengine.logging import MMLogger

from mmrepvit import switch_to_deploy
from mmrepvit.utils import benchmark as bm
from mmrepvit.utils.config import (
    ConfigOptionsAction,
    config_only,
    load_config,
    positive_size,
)

# The paper's compute of the ImageNet classifiers (deploy form, with head,
# 3x224x224), in GMACs (Table 1 of the paper; M0.6 is not given there).
PAPER_GMACS = {'m0_9': 0.8, 'm1_0': 1.1, 'm1_1': 1.3, 'm1_5': 2.3,
               'm2_3': 4.5}
DEFAULT_SHAPES = {'mmdet': (800, 1333), 'mmseg': (512, 512)}


class Classifier(nn.Module):
    """The paper's ImageNet classifier of an arch: the backbone's last
    stage, global average pooling and the official head (BatchNorm1d +
    Linear; one Linear in deploy form, where the BN is folded in); for
    ResNet-50 a Linear, as torchvision's."""

    def __init__(self, arch: str, deploy: bool, classes: int = 1000):
        super().__init__()
        self.backbone = bm.Subject.of(arch).build()
        width = 2048 if arch == bm.BASELINE else \
            self.backbone.out_channels[-1]
        self.head = nn.Linear(width, classes)
        if not deploy and arch != bm.BASELINE:
            self.head = nn.Sequential(nn.BatchNorm1d(width), self.head)
        if deploy:
            switch_to_deploy(self)
        self.eval()

    def forward(self, x):
        x = F.adaptive_avg_pool2d(self.backbone(x)[-1], 1)
        return self.head(x.flatten(1))


def parse_args():
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='\n'.join(__doc__.splitlines()[2:]))
    parser.add_argument('configs', nargs='*', type=config_only,
                        help='detector/segmentor '
                        'configs (files or mmdet::/mmseg:: paths)')
    parser.add_argument('--arch', nargs='+', default=[],
                        choices=bm.ARCHES, metavar='ARCH',
                        help=f'ImageNet classifiers: {", ".join(bm.ARCHES)}')
    parser.add_argument(
        '--shape', nargs='+', metavar='SIZE', type=positive_size,
        help='input size: H W, or one value for a square (default: 224 224 '
        'for --arch, 800 1333 for MMDetection, 512 512 for MMSegmentation '
        'configs)')
    form = parser.add_mutually_exclusive_group()
    form.add_argument('--deploy', action='store_true',
                      help='the deploy form only (mmrepvit.switch_to_deploy)')
    form.add_argument('--forms', nargs='+', choices=['training', 'deploy'],
                      help='forms to count (default: training, or deploy '
                      'with --deploy)')
    parser.add_argument('--breakdown', nargs='?', type=int, const=1,
                        default=0, metavar='DEPTH',
                        help='per-module table down to DEPTH levels '
                        '(default 1: backbone, neck, heads)')
    parser.add_argument('--cfg-options', nargs='+',
                        action=ConfigOptionsAction,
                        help='override config settings, key=value')
    args = parser.parse_args()
    if not args.configs and not args.arch:
        parser.error('give a config or --arch')
    if args.cfg_options and not args.configs:
        parser.error('--cfg-options changes configs; --arch counts the '
                     'ImageNet classifier of an arch as it is')
    if args.shape and len(args.shape) > 2:
        parser.error(f'--shape takes H W or one size, got {args.shape}')
    if args.shape:
        args.shape = args.shape * (3 - len(args.shape))   # N -> N N
    return args


def count(arch=None, cfg=None, deploy=False, shape=None):
    """MMEngine's FlopAnalyzer, the parameter count and the input shape of
    the classifier of ``arch`` or the model of ``cfg``."""
    if cfg is None:
        model = Classifier(arch, deploy)
        inputs, task = torch.randn(1, 3, *(shape or (224, 224))), 'forward'
    else:
        subject = bm.Subject.of(cfg)
        model = subject.build()
        if deploy:
            switch_to_deploy(model)
        inputs = subject.inputs(model, 1, shape or
                                DEFAULT_SHAPES[cfg.default_scope])
        task = 'predict'
    analyzer = bm.flop_analyzer(model, inputs, task)
    image = inputs if cfg is None else inputs['inputs']
    return analyzer, parameter_count(model)[''], tuple(image.shape)


def format_count(n: float) -> str:
    """7775232 -> '7.775M'; 1.337e9 -> '1.337G'."""
    for scale, suffix in ((1e12, 'T'), (1e9, 'G'), (1e6, 'M'), (1e3, 'K')):
        if abs(n) >= scale:
            return f'{n / scale:.3f}{suffix}'
    return f'{n:.0f}'


def paper_diff(arch, macs):
    """The deploy-form MACs against the paper's GMACs, or None."""
    return macs / 1e9 / PAPER_GMACS[arch] - 1 if arch in PAPER_GMACS \
        else None


def report(name, arch, form, result, depth):
    analyzer, params, shape = result
    print(f'\n== {name}, {form} form, input {"x".join(map(str, shape))}')
    print(f'Params: {format_count(params)}')
    print(f'MACs:   {format_count(analyzer.total())}')
    diff = paper_diff(arch, analyzer.total())
    if diff is not None and form == 'deploy':
        print(f'Paper:  {PAPER_GMACS[arch]} GMACs ({diff:+.1%}; '
              f'{"within" if abs(diff) <= 0.05 else "OUTSIDE"} 5%)')
    uncounted = analyzer.unsupported_ops()
    if uncounted:
        ops = ', '.join(f'{op.replace("aten::", "")} x{n}'
                        for op, n in uncounted.most_common())
        print(f'Not counted (MMEngine has no rule for them): {ops}')
    if depth:
        print('\n' + complexity_stats_table(analyzer, max_depth=depth,
                                            show_param_shapes=False))


def table(rows, forms):
    """One markdown row per model, the forms side by side."""
    head = ['model', 'input'] + [f'params, {f}' for f in forms] + \
        [f'GMACs, {f}' for f in forms]
    head += ['paper GMACs', 'deploy vs paper'] * ('deploy' in forms)
    print('\n| ' + ' | '.join(head) + ' |\n|' + '---|' * len(head))
    for name, arch, results in rows:
        cells = [name, 'x'.join(map(str, results[forms[0]][2]))]
        cells += [format_count(results[f][1]) for f in forms]
        cells += [f'{results[f][0].total() / 1e9:.3f}' for f in forms]
        if 'deploy' in forms:
            diff = paper_diff(arch, results['deploy'][0].total())
            cells += ['-', '-'] if diff is None else [
                str(PAPER_GMACS[arch]), f'{diff:+.1%}']
        print('| ' + ' | '.join(cells) + ' |')


def main():
    args = parse_args()
    # no report of every parameter's initialisation
    MMLogger.get_instance('mmrepvit_get_flops', log_level='WARNING')
    forms = args.forms or (['deploy'] if args.deploy else ['training'])
    subjects = [(f'{bm.Subject.of(a).name} (ImageNet classifier)', a, None)
                for a in args.arch]
    for config in args.configs:
        cfg = load_config(config, args.cfg_options)
        subjects.append((bm.Subject.of(cfg).name, None, cfg))
    rows = []
    for name, arch, cfg in subjects:
        results = {}
        for form in forms:
            results[form] = count(arch, cfg, form == 'deploy', args.shape)
            report(name, arch, form, results[form], args.breakdown)
        rows.append((name, arch, results))
    if len(rows) > 1 or len(forms) > 1:
        table(rows, forms)


if __name__ == '__main__':
    main()
