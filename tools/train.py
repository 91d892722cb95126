#!/usr/bin/env python
# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
"""Train an MMDetection or MMSegmentation config (the config's default_scope
decides which) with MMEngine's Runner; the flags are MMDetection's.

    python tools/train.py configs/det/repvit_m1_1_maskrcnn.py
    tools/dist_train.sh configs/det/repvit_m1_1_maskrcnn.py 8 --auto-scale-lr
"""
import argparse
import logging

from mmengine.device import get_device
from mmengine.logging import print_log
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from mmrepvit.utils import find_resume_checkpoint
from mmrepvit.utils.checks import check_config
from mmrepvit.utils.config import config_file, parse_tool_args


def build_parser():
    parser = argparse.ArgumentParser(description='Train a detector or a '
                                     'segmentor')
    parser.add_argument('config', type=config_file,
                        help='train config file path')
    parser.add_argument('--amp', action='store_true',
                        help='enable automatic mixed precision training')
    parser.add_argument(
        '--auto-scale-lr', action='store_true',
        help='scale the learning rate by (GPUs x images per GPU) / '
        'auto_scale_lr.base_batch_size')
    parser.add_argument(
        '--resume', nargs='?', type=str, const='auto',
        help='resume from the given checkpoint, or, with no value, from the '
        'latest checkpoint in the work dir')
    return parser


def make_resumable(cfg) -> None:
    """Use :class:`AtomicCheckpointHook` for the config's checkpoint hook
    (when it is MMEngine's plain ``CheckpointHook``) and add
    :class:`RandomStateHook`, in place."""
    hook = (cfg.get('default_hooks') or {}).get('checkpoint')
    if hook is not None and hook.get('type') in ('CheckpointHook',
                                                 'mmengine.CheckpointHook'):
        hook['type'] = 'AtomicCheckpointHook'
    custom = list(cfg.get('custom_hooks') or [])
    if not any(h.get('type') == 'RandomStateHook' for h in custom):
        custom.append(dict(type='RandomStateHook'))
    cfg.custom_hooks = custom


def main():
    args, cfg = parse_tool_args(build_parser())

    if args.amp:
        if get_device() == 'cpu':   # MMEngine asserts it after building all
            raise RuntimeError(
                '--amp trains with MMEngine\'s AmpOptimWrapper, which runs '
                'on a GPU (CUDA, NPU, MLU or MUSA) only, and this machine has '
                'none; train without --amp.')
        if cfg.optim_wrapper.get('type', 'OptimWrapper') == 'AmpOptimWrapper':
            print_log('AMP training is already enabled in your config.',
                      logger='current', level=logging.WARNING)
        else:
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
            cfg.optim_wrapper.loss_scale = 'dynamic'

    if args.auto_scale_lr:
        if not cfg.get('auto_scale_lr') or \
                'base_batch_size' not in cfg.auto_scale_lr:
            raise RuntimeError('--auto-scale-lr needs auto_scale_lr = '
                               'dict(base_batch_size=...) in the config.')
        cfg.auto_scale_lr.enable = True

    make_resumable(cfg)
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = find_resume_checkpoint(cfg.work_dir)
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume
    check_config(cfg, ['train_dataloader', 'val_dataloader'])
    if cfg.get('load_from'):
        # resuming needs every weight (and a training state), fine-tuning
        # (load_from) at least one weight
        resume = bool(cfg.get('resume'))
        cfg.custom_hooks.append(dict(
            type='RefuseUnfitCheckpointHook', checkpoint=cfg.load_from,
            whole=resume, resume=resume))

    runner = (Runner.from_cfg(cfg) if 'runner_type' not in cfg else
              RUNNERS.build(cfg))
    runner.train()


if __name__ == '__main__':
    main()
