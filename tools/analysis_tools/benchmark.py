#!/usr/bin/env python
# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
"""Latency of RepViT backbones, detectors and segmentors in training,
deploy and deploy + channels_last form, beside ResNet-50, in one run.

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
    # one training step, part by part (data preprocessor, backbone forward
    # and backward, neck, heads), training vs channels_last
    python tools/analysis_tools/benchmark.py \\
        configs/det/repvit_m0_6_maskrcnn_demo.py --train-breakdown \\
        --sizes 256 --batch-sizes 4
    # peak memory of one backbone training step, with_cp off and on
    python tools/analysis_tools/benchmark.py --arch m1_1 --train-memory \\
        --sizes 512 --batch-sizes 2

Models have random weights (nothing is downloaded). Times are medians (and
interquartile ranges) of torch.utils.benchmark's blocked_autorange, with the
cases of each input size, batch and thread count interleaved in --rounds
rounds. "x training": speed-up over the same model's training form; "x
ResNet-50": over the baseline's training form; GMAC/s: MMEngine's MAC count
of the case divided by its median time, beside the CPU's peak (printed at
the top; how it is estimated is printed too). --split times the backbone,
backbone + neck and the whole model in the same rounds and reports the
differences; "MAC bound": the baseline's MACs over the model's.
"""
import argparse
import os.path as osp
import platform
import sys

import torch

from mmrepvit.analysis import builders, latency

INFERENCE_FORMS = ['training', 'deploy', 'deploy+channels_last']


def size_arg(text):
    """'512' -> (512, 512); '800x1333' -> (800, 1333)."""
    try:
        parts = [int(v) for v in text.lower().split('x')]
    except ValueError:
        parts = []
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) < 1:
        raise argparse.ArgumentTypeError(f'sizes are N or HxW, got {text!r}')
    return tuple(parts)


def count_arg(minimum):
    """An argparse type: an integer of at least ``minimum``."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(
                f'expected an integer >= {minimum}, got {text!r}')
        return value
    return parse


def seconds_arg(text):
    """A time in seconds above zero."""
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not value > 0:
        raise argparse.ArgumentTypeError(
            f'expected seconds above zero, got {text!r}')
    return value


def device_arg(text):
    """'cpu', 'cuda' or 'cuda:N' (normalised by torch.device), checked
    against the CUDA devices this PyTorch sees."""
    try:
        device = torch.device(text)
    except RuntimeError:
        device = None
    if device is None or device.type not in ('cpu', 'cuda'):
        raise argparse.ArgumentTypeError(
            f"expected cpu, cuda or cuda:N, got {text!r}")
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


def is_cuda(device):
    return torch.device(device).type == 'cuda'


def parse_args():
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='\n'.join(__doc__.splitlines()[2:]))
    parser.add_argument('configs', nargs='*',
                        help='detector/segmentor configs (files or '
                        'mmdet::/mmseg:: paths)')
    parser.add_argument('--arch', nargs='+', default=[], metavar='ARCH',
                        choices=builders.arch_names(),
                        help=f'backbones: {", ".join(builders.arch_names())}')
    parser.add_argument('--task', choices=list(latency.TASKS),
                        help='for configs: predict (default), features '
                        '(backbone + neck) or train (loss + backward); '
                        'backbones: forward')
    parser.add_argument('--forms', nargs='+', choices=list(latency.FORMS),
                        help='default: training deploy deploy+channels_last '
                        '(train and --train-breakdown: training '
                        'channels_last)')
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
    parser.add_argument('--batch-sizes', nargs='+', type=count_arg(1),
                        default=[1])
    parser.add_argument('--threads', nargs='+', type=count_arg(1),
                        default=[torch.get_num_threads()])
    parser.add_argument('--device', type=device_arg, default='cuda' if
                        torch.cuda.is_available() else 'cpu',
                        help='cpu, cuda or cuda:N (default: cuda where '
                        'there is one)')
    parser.add_argument('--warmup', type=count_arg(0), default=2,
                        help='untimed calls per case before timing')
    parser.add_argument('--min-run-time', type=seconds_arg, default=1.0,
                        help='seconds per case per round')
    parser.add_argument('--rounds', type=count_arg(1), default=3)
    parser.add_argument('--no-macs', action='store_true',
                        help='skip the MAC count (and GMAC/s)')
    parser.add_argument('--train-breakdown', action='store_true',
                        help='time the parts of one training step')
    parser.add_argument('--train-memory', action='store_true',
                        help='peak memory of one backbone training step, '
                        'with_cp off and on, each in a fresh process')
    parser.add_argument('--out', help='also write the report (markdown) here')
    args = parser.parse_args()
    if not args.configs and not args.arch:
        parser.error('give configs or --arch')
    if args.train_breakdown and not args.configs:
        parser.error('--train-breakdown needs detector/segmentor configs')
    if args.train_breakdown and (args.cuda_amp or set(
            args.forms or ()) - set(latency.BREAKDOWN_FORMS)):
        parser.error('--train-breakdown times the training and '
                     'channels_last forms only; --cuda-amp and the deploy, '
                     'fp16 and onnxruntime forms are for inference (--task '
                     'predict, features or backbone, or --split)')
    if args.split and (not args.configs or args.arch or args.task):
        parser.error('--split times configs (no --arch) on its own tasks '
                     '(no --task)')
    if args.train_memory and not args.arch:
        parser.error('--train-memory needs --arch')
    if args.baseline not in ('auto', 'none') and '::' not in \
            args.baseline and not osp.isfile(args.baseline):
        parser.error(f"--baseline takes 'auto' (ResNet-50 beside --arch, "
                     f"the ResNet-50 twin beside configs), 'none' or a "
                     f"detector/segmentor config (a file or an mmdet::/"
                     f"mmseg:: path), not {args.baseline!r}; a backbone is "
                     f"measured with --arch")
    return args


def subjects_of(args):
    subjects = [latency.arch_subject(a) for a in args.arch]
    cfgs = [builders.load_config(c) for c in args.configs]
    subjects += [latency.config_subject(c) for c in cfgs]
    if args.baseline == 'auto':
        if cfgs:
            subjects.append(latency.config_subject(
                builders.resnet50_twin(cfgs[0]), baseline=True))
        if args.arch and builders.BASELINE not in args.arch:
            subjects.append(latency.arch_subject(builders.BASELINE))
    elif args.baseline != 'none':
        subjects.append(latency.config_subject(
            builders.load_config(args.baseline), baseline=True))
    return subjects, cfgs


def header(args, peak):
    lines = [f'$ python {" ".join(sys.argv)}',
             f'torch {torch.__version__}, Python {platform.python_version()}'
             f', device {args.device}']
    if is_cuda(args.device):
        lines.append(f'GPU: {torch.cuda.get_device_name(args.device)}')
    elif peak:
        lines.append(f'CPU peak: {peak.describe()}')
    return lines


def main():
    args = parse_args()
    builders.use_quiet_logger()
    if is_cuda(args.device):
        torch.backends.cudnn.benchmark = True
    peak = latency.cpu_peak() if args.device == 'cpu' else None
    report = header(args, peak)
    print('\n'.join(report), flush=True)
    subjects, cfgs = subjects_of(args)
    task = args.task or ('predict' if cfgs else 'forward')
    tasks = latency.SPLIT_TASKS if args.split else task
    default_sizes = {'mmdet': (800, 1333), 'mmseg': (512, 512)}
    sizes = args.sizes or [default_sizes[cfgs[0].default_scope]
                           if cfgs else (224, 224)]
    training = task == 'train' or args.train_breakdown
    forms = args.forms or (['training', 'channels_last'] if training else
                           INFERENCE_FORMS)
    if args.cuda_amp:
        forms = forms + [f for f in latency.CUDA_AMP_FORMS if f not in forms]

    if args.train_memory:
        report += memory(args)
    elif args.train_breakdown:
        report += breakdown(args, subjects, forms, sizes)
    else:
        rows = latency.run_benchmark(
            subjects, forms, tasks, args.batch_sizes, sizes, args.threads,
            args.device, args.warmup, args.min_run_time, args.rounds,
            with_macs=not args.no_macs)
        report += [''] + [f'task: {t} ({latency.TASKS[t].description})'
                          for t in ([tasks] if isinstance(tasks, str)
                                    else tasks)]
        report += ['', latency.markdown_table(rows, peak), '']
        if args.split:
            report += ['where the time goes (neck = features - backbone, '
                       'heads = predict - features; median ms, share of the '
                       'whole)', '', latency.split_table(rows), '']
        report += latency.goal_lines(rows)
    print('\n'.join(report[len(header(args, peak)):]))
    if args.out:
        with open(args.out, 'w') as f:
            f.write('\n'.join(report) + '\n')


def breakdown(args, subjects, forms, sizes):
    out = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        for size in sizes:
            for batch in args.batch_sizes:
                cases = [c for s in subjects for f in forms
                         for c in latency.breakdown_cases(
                             s, f, batch, size, args.device)]
                results = latency.measure(cases, threads, args.warmup,
                                          args.min_run_time, args.rounds)
                out += ['', f'training step, {batch}x3x{size[0]}x{size[1]}'
                        f', {threads} threads, median ms', '',
                        latency.breakdown_table([s.name for s in subjects],
                                                forms, cases, results)]
    return out


def memory(args):
    out = ['', 'peak memory of one training step (forward + backward), '
           'MiB, fresh process each', '',
           '| backbone | input | without with_cp | with_cp | ratio |',
           '|---|---|---|---|---|']
    for arch in args.arch:
        for size in args.sizes or [(512, 512)]:
            for batch in args.batch_sizes:
                off, on = (latency.train_step_memory(
                    arch, size, batch, cp, args.threads[0], args.device)
                    for cp in (False, True))
                out.append(f'| {builders.display_name(arch)} | '
                           f'{batch}x3x{size[0]}x{size[1]} | {off:.0f} | '
                           f'{on:.0f} | {on / off:.2f} |')
    return out


if __name__ == '__main__':
    main()
