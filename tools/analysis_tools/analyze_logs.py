#!/usr/bin/env python
# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
"""Training curves and summaries from MMEngine and MMCV 1.x json logs.

    # loss (total and terms), lr and COCO AP / mIoU of a run, into a PNG
    python tools/analysis_tools/analyze_logs.py plot_curve \\
        work_dirs/demo_det --out curves.png
    # your run beside the paper's official log (MMDetection 2.x format)
    python tools/analysis_tools/analyze_logs.py plot_curve \\
        work_dirs/repvit_m1_1_maskrcnn repvit_m1_1_coco.json \\
        --keys loss coco/bbox_mAP coco/segm_mAP --x epoch \\
        --legend ours paper --out vs_paper.png
    # final and best metrics, median time per iteration, peak memory
    python tools/analysis_tools/analyze_logs.py summary work_dirs/demo_det

A LOG is a log file (MMEngine's vis_data/scalars.json or vis_data/<time>.json;
MMCV 1.x's *.log.json) or a directory holding one (the newest is taken).
MMCV 1.x names and units are converted to MMEngine's (bbox_mAP ->
coco/bbox_mAP, MMSegmentation 0.x's mIoU fraction -> percent).
"""
import argparse

from mmrepvit.utils import logs


def parse_args():
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='\n'.join(__doc__.splitlines()[2:]))
    sub = parser.add_subparsers(dest='command', required=True)
    plot = sub.add_parser('plot_curve', help='plot curves into a PNG')
    plot.add_argument('logs', nargs='+', metavar='LOG')
    plot.add_argument('--keys', nargs='+',
                      help='what to plot (default: loss and its terms, lr, '
                      f'and {", ".join(logs.DEFAULT_METRICS)} where logged)')
    plot.add_argument('--legend', nargs='+', help='one name per log')
    plot.add_argument('--x', choices=['iter', 'epoch'], default='iter')
    plot.add_argument('--title')
    plot.add_argument('--out', default='curves.png', help='PNG to write')
    summary = sub.add_parser('summary', aliases=['cal_train_time'],
                             help='print final/best metrics, time, memory')
    summary.add_argument('logs', nargs='+', metavar='LOG')
    summary.add_argument('--keys', nargs='+', help='metrics to show')
    args = parser.parse_args()
    if getattr(args, 'legend', None) and len(args.legend) != len(args.logs):
        parser.error(f'--legend needs one name per log ({len(args.logs)})')
    return parser, args


def main():
    parser, args = parse_args()
    names = getattr(args, 'legend', None) or [None] * len(args.logs)
    try:
        runs = [logs.load_log(path, name)
                for path, name in zip(args.logs, names)]
    except (FileNotFoundError, ValueError) as e:
        parser.error(str(e))
    for run in runs:
        print(logs.format_summary(logs.summarize(run), args.keys))
    x = getattr(args, 'x', None)   # summary: logged at all
    missing = [k for k in args.keys or [] if not any(
        run.series(k, x or 'iter')[0] for run in runs)]
    if missing:
        print(f'not in any log{f" (against {x})" if x else ""}: '
              f'{", ".join(missing)}')
    if args.command == 'plot_curve':
        try:
            png = logs.plot_logs(runs, args.out, args.keys, args.x,
                                 args.title)
        except ValueError as e:   # nothing logged against --x
            parser.error(str(e))
        print(f'curves: {png}')


if __name__ == '__main__':
    main()
