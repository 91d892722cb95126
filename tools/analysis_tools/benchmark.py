#!/usr/bin/env python
# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
"""Latency of RepViT models in several forms, beside ResNet-50, in one run.

    # backbones (four stage outputs), ResNet-50 (MMDetection's) as baseline
    python tools/analysis_tools/benchmark.py --arch m1_1 m0_6 \\
        --sizes 512 224 --batch-sizes 1 8 --threads 2 1
    # a detector or segmentor against its ResNet-50 twin (the same config
    # with the ResNet-50 of MMDetection's / MMSegmentation's own model)
    python tools/analysis_tools/benchmark.py \\
        configs/det/repvit_m1_1_maskrcnn.py --task predict --sizes 800x1333
    python tools/analysis_tools/benchmark.py \\
        configs/det/repvit_m1_1_maskrcnn.py --task train --sizes 256 \\
        --batch-sizes 4
    # where a whole model's time goes (backbone, neck, heads), against
    # ResNet-50 and the bound its MAC count sets; onnxruntime too
    python tools/analysis_tools/benchmark.py \\
        configs/seg/repvit_m1_1_fpn_ade20k.py --split --sizes 512 512x2048 \\
        --forms training deploy deploy+channels_last onnxruntime
    # on a GPU, with the float16 autocast forms
    python tools/analysis_tools/benchmark.py --arch m1_1 --cuda-amp

Models have random weights (nothing is downloaded). Times are medians (and
interquartile ranges) of torch.utils.benchmark's blocked_autorange, with the
cases of each input size, batch and thread count interleaved in --rounds
rounds. "x training": speed-up over the same model's training form; "x
ResNet-50": over the baseline's training form; GMAC/s: MMEngine's MAC count
of the case over its median time. --split times the backbone, backbone +
neck and the whole model in the same rounds and reports the differences;
"MAC bound": the baseline's MACs over the model's.
"""
import argparse
import copy
import os.path as osp
import platform
import sys
from pathlib import Path

import torch
from mmengine.hub import get_config
from mmengine.logging import MMLogger

from mmrepvit.apis import cpu_flags
from mmrepvit.utils import benchmark as bm
from mmrepvit.utils import benchmark_tables as tables
from mmrepvit.utils.config import checked, config_only, load_config

TASKS = {'forward': 'a backbone, eval mode, no grad',
         'predict': "model(..., mode='predict'), eval, no grad",
         'features': 'backbone + neck (extract_feat), eval, no grad',
         'backbone': "the config's backbone alone, eval, no grad",
         'train': 'training step: loss + backward'}
DEFAULT_SIZES = {'mmdet': (800, 1333), 'mmseg': (512, 512)}
# The ResNet-50 model of each library, whose backbone a twin gets.
RESNET50_MODELS = {'mmdet': 'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
                   'mmseg': 'mmseg::_base_/models/fpn_r50.py'}


def size_arg(text):
    """'512' -> (512, 512); '800x1333' -> (800, 1333)."""
    try:
        parts = [int(v) for v in text.lower().split('x')]
    except ValueError:
        parts = []
    parts *= 2 if len(parts) == 1 else 1
    if len(parts) != 2 or min(parts) < 1:
        raise argparse.ArgumentTypeError(f'sizes are N or HxW, got {text!r}')
    return tuple(parts)


def device_arg(text):
    """'cpu', 'cuda' or 'cuda:N' (as torch.device), if PyTorch sees it."""
    try:
        device = torch.device(text)
    except RuntimeError:
        device = None
    if device is None or device.type not in ('cpu', 'cuda'):
        raise argparse.ArgumentTypeError(
            f'expected cpu, cuda or cuda:N, got {text!r}')
    if device.type == 'cpu':
        return 'cpu'
    if not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(
            f'{text!r}: this PyTorch sees no CUDA device '
            f'(torch.cuda.is_available() is False); use --device cpu, or '
            f'a PyTorch built with CUDA on a machine with a GPU')
    if (device.index or 0) >= torch.cuda.device_count():
        raise argparse.ArgumentTypeError(
            f'{text!r}: there are {torch.cuda.device_count()} CUDA devices '
            f'(cuda:0 to cuda:{torch.cuda.device_count() - 1})')
    return str(device)


def parse_args():
    count, positive = checked(int, lambda v: v >= 1, 'an integer >= 1'), \
        checked(float, lambda v: v > 0, 'seconds above zero')
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='\n'.join(__doc__.splitlines()[2:]))
    parser.add_argument('configs', nargs='*', type=config_only,
                        help='detector/segmentor '
                        'configs (files or mmdet::/mmseg:: paths)')
    parser.add_argument('--arch', nargs='+', default=[], metavar='ARCH',
                        choices=bm.ARCHES,
                        help=f'backbones: {", ".join(bm.ARCHES)}')
    parser.add_argument('--task', choices=list(bm.TASKS), help='; '.join(
        f'{k}: {v}' for k, v in TASKS.items()) + ' (default: predict, or '
        'forward for --arch)')
    parser.add_argument('--forms', nargs='+', choices=list(bm.FORMS),
                        help='default: training deploy deploy+channels_last '
                        '(--task train: training channels_last); CPU only: '
                        + ', '.join(bm.CPU_FORMS))
    parser.add_argument('--split', action='store_true',
                        help='configs: time the backbone, backbone + neck '
                        'and the whole model (predict) in the same rounds, '
                        'and report where the time goes')
    parser.add_argument('--cuda-amp', action='store_true',
                        help='add the deploy+fp16 and deploy+channels_last+'
                        'fp16 forms (CUDA float16 autocast)')
    parser.add_argument('--baseline', default='auto',
                        help="'auto' (default): ResNet-50 beside backbones, "
                        "the first config's ResNet-50 twin beside configs; "
                        "'none'; or a config")
    parser.add_argument('--sizes', nargs='+', type=size_arg,
                        help='input sizes, N or HxW (default 224 for '
                        'backbones, 800x1333 for MMDetection, 512x512 for '
                        'MMSegmentation configs)')
    parser.add_argument('--batch-sizes', nargs='+', type=count, default=[1])
    parser.add_argument('--threads', nargs='+', type=count,
                        default=[torch.get_num_threads()])
    parser.add_argument('--device', type=device_arg, default='cuda' if
                        torch.cuda.is_available() else 'cpu', help='cpu, '
                        'cuda or cuda:N (default: cuda where there is one)')
    parser.add_argument('--warmup', default=2, help='untimed calls per case '
                        'before timing', type=checked(
                            int, lambda v: v >= 0, 'an integer >= 0'))
    parser.add_argument('--min-run-time', type=positive, default=1.0,
                        help='seconds per case per round')
    parser.add_argument('--rounds', type=count, default=3)
    parser.add_argument('--no-macs', action='store_true',
                        help='skip the MAC count (and GMAC/s)')
    parser.add_argument('--out', help='also write the report (markdown) here')
    args = parser.parse_args()
    if not args.configs and not args.arch:
        parser.error('give configs or --arch')
    if args.split and (not args.configs or args.arch or args.task):
        parser.error('--split times configs (no --arch) on its own tasks '
                     '(no --task)')
    if args.baseline not in ('auto', 'none') and '::' not in \
            args.baseline and not osp.isfile(args.baseline):
        parser.error(f"--baseline takes 'auto' (ResNet-50 beside --arch, "
                     f"the ResNet-50 twin beside configs), 'none' or a "
                     f"detector/segmentor config (a file or an mmdet::/"
                     f"mmseg:: path), not {args.baseline!r}; a backbone is "
                     f"measured with --arch")
    return args


def resnet50_twin(cfg):
    """``cfg`` with the backbone of its library's own ResNet-50 model
    (MMDetection's Mask R-CNN, MMSegmentation's Semantic FPN) and the neck's
    in_channels to match; neck, heads and settings stay."""
    if 'in_channels' not in cfg.model.get('neck', {}):
        raise ValueError(
            'A ResNet-50 twin swaps the backbone and sets the neck\'s '
            'in_channels; this config has no neck with in_channels. Pass '
            'a ResNet-50 config as the baseline instead.')
    reference = get_config(RESNET50_MODELS[cfg.default_scope]).model
    twin = copy.deepcopy(cfg)
    twin.model.backbone = copy.deepcopy(reference.backbone)
    twin.model.neck.in_channels = list(reference.neck.in_channels)
    twin.model.pop('pretrained', None)
    return twin


def subjects_of(args):
    """The models to measure, the baseline last, and the configs."""
    cfgs = [load_config(c) for c in args.configs]
    subjects = [bm.Subject.of(s) for s in args.arch + cfgs]
    if args.baseline == 'auto':
        if cfgs:
            subjects.append(bm.Subject.of(resnet50_twin(cfgs[0]), True))
        if args.arch and bm.BASELINE not in args.arch:
            subjects.append(bm.Subject.of(bm.BASELINE))
    elif args.baseline != 'none':
        subjects.append(bm.Subject.of(load_config(args.baseline), True))
    return subjects, cfgs


def header(args):
    """The command, versions, device, CPU with its ISA flags, and GPU."""
    info = Path('/proc/cpuinfo')   # Linux; elsewhere what platform says
    cpu = [line.split(':', 1)[1].strip() for line in (
        info.read_text().splitlines() if info.is_file() else [])
        if line.startswith('model name')] + [platform.processor()]
    lines = [f'$ python {" ".join(sys.argv)}',
             f'torch {torch.__version__}, Python {platform.python_version()}'
             f', device {args.device}', f'CPU: {cpu[0]}; ISA: '
             f'{", ".join(cpu_flags()) or "none known"}']
    if args.device != 'cpu':
        lines.append(f'GPU: {torch.cuda.get_device_name(args.device)}')
    return lines


def main():
    args = parse_args()
    # no report of every parameter's initialisation
    MMLogger.get_instance('mmrepvit_benchmark', log_level='WARNING')
    torch.backends.cudnn.benchmark = args.device != 'cpu'
    head = header(args)
    print('\n'.join(head), flush=True)
    subjects, cfgs = subjects_of(args)
    task = args.task or ('predict' if cfgs else 'forward')
    tasks = tables.SPLIT_TASKS if args.split else (task, )
    sizes = args.sizes or [DEFAULT_SIZES[cfgs[0].default_scope]
                           if cfgs else (224, 224)]
    forms = args.forms or (['training', 'channels_last'] if task == 'train'
                           else ['training', 'deploy', 'deploy+channels_last'])
    if args.cuda_amp:
        forms = forms + [f for f in bm.CUDA_AMP_FORMS if f not in forms]
    rows = bm.run_benchmark(
        subjects, forms, tasks, args.batch_sizes, sizes, args.threads,
        args.device, args.warmup, args.min_run_time, args.rounds,
        with_macs=not args.no_macs)
    if not rows:
        sys.exit('benchmark.py: error: nothing was measured (see the notes '
                 'above): a backbone (--arch) runs the forward task, a '
                 'config predict, features, backbone or train.')
    report = [''] + [f'task: {t} ({TASKS[t]})' for t in tasks] + [
        '', tables.markdown_table(rows), '']
    if args.split:
        report += ['where the time goes (neck = features - backbone, heads = '
                   'predict - features; median ms, share of the whole)', '',
                   tables.split_table(rows), '']
    print('\n'.join(report))
    if args.out:
        Path(args.out).write_text('\n'.join(head + report) + '\n')


if __name__ == '__main__':
    main()
