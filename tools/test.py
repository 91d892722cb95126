#!/usr/bin/env python
# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
"""Test (evaluate) a checkpoint of an MMDetection or MMSegmentation config (the
config's default_scope decides which); the flags are MMDetection's.

    python tools/test.py configs/det/repvit_m1_1_maskrcnn.py repvit_m1_1_coco.pth
    python tools/test.py CONFIG CKPT --show-dir vis --out results.pkl
    python tools/test.py CONFIG CKPT --fuse --channels-last   # deploy form
    python tools/test.py CONFIG CKPT --tta    # test-time augmentation
"""
import argparse

from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from mmrepvit.engine import refuse_unfit_checkpoint
from mmrepvit.utils.checks import check_config
from mmrepvit.utils.compat import run_job, write_test_metrics_on_rank0_only
from mmrepvit.utils.config import add_common_args, tool_config, use_tta


def parse_args():
    parser = argparse.ArgumentParser(description='Test (and evaluate) a '
                                     'detector or a segmentor')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--out', help='detection: dump predictions to this .pkl file; '
        'segmentation: write predicted label maps (PNG) to this directory')
    parser.add_argument('--show', action='store_true',
                        help='show predictions in a window')
    parser.add_argument(
        '--show-dir', help='save images with predictions drawn to this '
        'directory; a relative path is, as in each library\'s own test.py, '
        'relative to WORK_DIR/TIMESTAMP/ for detection (the images go in '
        'SHOW_DIR/) and to the current directory for segmentation (the '
        'images go in SHOW_DIR/vis_data/vis_image/)')
    parser.add_argument('--wait-time', type=float, default=2,
                        help='seconds each image is shown with --show')
    parser.add_argument('--fuse', action='store_true',
                        help='fuse (re-parameterise) every RepViT before '
                        'testing; fused checkpoints need no flag')
    parser.add_argument('--channels-last', action='store_true',
                        help='fuse, and run backbone and neck in the '
                        'channels_last memory format')
    parser.add_argument(
        '--tta', action='store_true',
        help='test-time augmentation: test with the config\'s tta_pipeline '
        'and tta_model (detection configs without them get MMDetection\'s '
        'defaults: a horizontal flip, merged by DetTTAModel)')
    add_common_args(parser)
    return parser.parse_args()


def enable_visualization(cfg, args):
    hook = cfg.default_hooks.get('visualization')
    if hook is None:
        raise RuntimeError('--show/--show-dir need a "visualization" entry '
                           'in default_hooks.')
    hook['draw'] = True
    hook['interval'] = 1
    if hook.get('type') in ('SegVisualizationHook',
                            'mmseg.SegVisualizationHook'):
        # mmseg's hook reads runner.iter, which builds the training
        # dataloader: testing would need the training set.
        hook['type'] = 'SegTestVisualizationHook'
    if args.show:
        hook['show'] = True
        hook['wait_time'] = args.wait_time
    if args.show_dir:
        if cfg.default_scope == 'mmdet':
            hook['test_out_dir'] = args.show_dir
        else:
            cfg.visualizer['save_dir'] = args.show_dir


def main():
    args = parse_args()
    cfg = tool_config(args)
    if args.out and cfg.default_scope == 'mmdet' and \
            not args.out.endswith(('.pkl', '.pickle')):
        raise ValueError(f'--out for detection must be a .pkl file, not '
                         f'{args.out!r}.')
    cfg.load_from = args.checkpoint
    check_config(cfg, ['test_dataloader'])
    if args.show or args.show_dir:
        enable_visualization(cfg, args)
    if args.tta:
        use_tta(cfg)

    if args.fuse or args.channels_last:
        cfg.custom_hooks = list(cfg.get('custom_hooks', [])) + [dict(
            type='FuseModelHook', channels_last=args.channels_last)]

    if args.out and cfg.default_scope == 'mmseg':
        cfg.test_evaluator['output_dir'] = args.out
        cfg.test_evaluator['keep_results'] = True

    runner = (Runner.from_cfg(cfg) if 'runner_type' not in cfg else
              RUNNERS.build(cfg))

    if args.out and cfg.default_scope == 'mmdet':
        from mmdet.evaluation import DumpDetResults
        runner.test_evaluator.metrics.append(
            DumpDetResults(out_file_path=args.out))
    refuse_unfit_checkpoint(runner, args.checkpoint)
    write_test_metrics_on_rank0_only(runner)
    run_job(runner.test)


if __name__ == '__main__':
    main()
