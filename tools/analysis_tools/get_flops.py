#!/usr/bin/env python
# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
"""Parameters and multiply-accumulates (MMEngine's complexity analysis) of
RepViT classifiers, detectors and segmentors, in training and deploy form.

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

from mmrepvit.analysis import builders
from mmrepvit.analysis.complexity import (PAPER_GMACS, arch_complexity,
                                          config_complexity, format_count)
from mmrepvit.runner import ConfigOptionsAction

DEFAULT_SHAPES = {'mmdet': (800, 1333), 'mmseg': (512, 512)}


def parse_args():
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='\n'.join(__doc__.splitlines()[3:]))
    parser.add_argument('configs', nargs='*', help='detector/segmentor '
                        'configs (files or mmdet::/mmseg:: paths)')
    parser.add_argument('--arch', nargs='+', default=[],
                        choices=builders.arch_names(), metavar='ARCH',
                        help='ImageNet classifiers: '
                        f'{", ".join(builders.arch_names())}')
    parser.add_argument('--shape', nargs=2, type=int, metavar=('H', 'W'),
                        help='input size (default: 224 224 for --arch, '
                        '800 1333 for MMDetection, 512 512 for '
                        'MMSegmentation configs)')
    form = parser.add_mutually_exclusive_group()
    form.add_argument('--deploy', action='store_true',
                      help='the deploy form only (mmrepvit.switch_to_deploy)')
    form.add_argument('--forms', nargs='+', choices=['training', 'deploy'],
                      help='forms to count (default: training, or deploy '
                      'with --deploy)')
    parser.add_argument('--breakdown', nargs='?', type=int, const=1,
                        default=0, metavar='DEPTH',
                        help='per-module breakdown down to DEPTH levels '
                        '(default 1: backbone, neck, heads)')
    parser.add_argument('--cfg-options', nargs='+',
                        action=ConfigOptionsAction,
                        help='override config settings, key=value')
    args = parser.parse_args()
    if not args.configs and not args.arch:
        parser.error('give a config or --arch')
    return args


def subjects(args):
    """(name, input label, function of (deploy, depth)) per model asked."""
    for arch in args.arch:
        size = tuple(args.shape or (224, 224))
        yield (f'{builders.display_name(arch)} (ImageNet classifier)', arch,
               size, lambda deploy, depth, a=arch, s=size: arch_complexity(
                   a, deploy, s, depth))
    for config in args.configs:
        cfg = builders.load_config(config, args.cfg_options)
        size = tuple(args.shape or DEFAULT_SHAPES[cfg.default_scope])
        yield (builders.model_name(cfg), None, size,
               lambda deploy, depth, c=cfg, s=size: config_complexity(
                   c, s, deploy, depth))


def report(name, arch, form, result, depth):
    shape = 'x'.join(map(str, result.input_shape))
    print(f'\n== {name}, {form} form, input {shape}')
    print(f'Params: {format_count(result.params)}')
    print(f'MACs:   {format_count(result.macs)}')
    if arch in PAPER_GMACS and form == 'deploy':
        paper = PAPER_GMACS[arch]
        diff = result.macs / 1e9 / paper - 1
        print(f'Paper:  {paper} GMACs ({diff:+.1%}; '
              f'{"within" if abs(diff) <= 0.05 else "OUTSIDE"} 5%)')
    if result.uncounted:
        ops = ', '.join(f'{op.replace("aten::", "")} x{n}' for op, n in
                        sorted(result.uncounted.items(), key=lambda i: -i[1]))
        print(f'Not counted (MMEngine has no rule for them): {ops}')
    if depth:
        print('\n| module | params | MACs | share of MACs |')
        print('|---|---|---|---|')
        for module, (params, macs) in result.by_module.items():
            print(f'| {"  " * module.count(".")}{module} | '
                  f'{format_count(params)} | {format_count(macs)} | '
                  f'{macs / max(result.macs, 1):.1%} |')


def table(rows, forms):
    """One markdown row per model, the forms side by side."""
    head = ['model', 'input'] + [f'params, {f}' for f in forms] + \
        [f'GMACs, {f}' for f in forms]
    if 'deploy' in forms:
        head += ['paper GMACs', 'deploy vs paper']
    print('\n| ' + ' | '.join(head) + ' |\n|' + '---|' * len(head))
    for name, arch, results in rows:
        shape = 'x'.join(map(str, results[forms[0]].input_shape))
        cells = [name, shape]
        cells += [format_count(results[f].params) for f in forms]
        cells += [f'{results[f].macs / 1e9:.3f}' for f in forms]
        if 'deploy' in forms:
            paper = PAPER_GMACS.get(arch)
            cells += [str(paper) if paper else '-',
                      f'{results["deploy"].macs / 1e9 / paper - 1:+.1%}'
                      if paper else '-']
        print('| ' + ' | '.join(cells) + ' |')


def main():
    args = parse_args()
    builders.use_quiet_logger()
    forms = args.forms or (['deploy'] if args.deploy else ['training'])
    rows = []
    for name, arch, size, measure in subjects(args):
        results = {}
        for form in forms:
            results[form] = measure(form == 'deploy', args.breakdown)
            report(name, arch, form, results[form], args.breakdown)
        rows.append((name, arch, results))
    if len(rows) > 1 or len(forms) > 1:
        table(rows, forms)


if __name__ == '__main__':
    main()
