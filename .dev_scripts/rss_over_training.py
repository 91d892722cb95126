#!/usr/bin/env python
# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
"""Does resident memory grow over a long training run? Train a config for
N iterations (the seg demo config by default, the cheapest), record the
resident set size (RSS) of the training process and its dataloader workers
after every iteration, and report the growth per 100 iterations after the
warm-up (least-squares slope), beside the RSS at a few points. Linux only
(reads /proc).

    python .dev_scripts/rss_over_training.py    # seg demo, 300 its
    python .dev_scripts/rss_over_training.py CONFIG --iters 300 \
        --warmup 50 --out rss.json

The data must be in place (``python tools/demo.py seg`` writes the demo
data to data/demo_ade). Validation and checkpoints are switched off, so
only training steps are measured.
"""
import argparse
import json
import os
import os.path as osp
import sys

import numpy as np
from mmengine.config import Config, DictAction
from mmengine.hooks import Hook
from mmengine.runner import Runner

PAGE = os.sysconf('SC_PAGE_SIZE')


def rss_mib(pid: int) -> float:
    """RSS of process ``pid`` in MiB (0 if it has ended)."""
    try:
        with open(f'/proc/{pid}/statm') as f:
            return int(f.read().split()[1]) * PAGE / 2**20
    except (FileNotFoundError, ProcessLookupError):
        return 0.0


def children(pid: int) -> list:
    pids = []
    for task in os.listdir(f'/proc/{pid}/task'):
        try:
            with open(f'/proc/{pid}/task/{task}/children') as f:
                pids += [int(p) for p in f.read().split()]
        except FileNotFoundError:
            continue
    return pids


class RSSHook(Hook):
    """Record (iteration, RSS of this process, RSS of its children) after
    every training iteration."""

    priority = 'LOWEST'

    def __init__(self):
        self.samples = []

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        me = os.getpid()
        self.samples.append((runner.iter + 1, rss_mib(me),
                             sum(rss_mib(p) for p in children(me))))


def slope_per_100(iters, values) -> float:
    """Least-squares slope of ``values`` over ``iters``, per 100."""
    return float(np.polyfit(iters, values, 1)[0] * 100)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config', nargs='?',
                        default='configs/seg/repvit_m0_6_fpn_demo.py')
    parser.add_argument('--iters', type=int, default=300)
    parser.add_argument('--warmup', type=int, default=50,
                        help='iterations left out of the slope')
    parser.add_argument('--work-dir', default='work_dirs/rss_over_training')
    parser.add_argument('--out', help='write the samples to this JSON file')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    return parser.parse_args()


def main():
    args = parse_args()
    if args.warmup + 10 > args.iters:
        sys.exit('--iters must exceed --warmup by at least 10 iterations.')
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    cfg.work_dir = args.work_dir
    cfg.launcher = 'none'
    if 'max_iters' not in cfg.train_cfg:
        sys.exit('This script runs iteration-based configs (train_cfg with '
                 'max_iters), such as the seg demo config.')
    for scheduler in cfg.get('param_scheduler') or []:
        if scheduler.get('end') == cfg.train_cfg.max_iters:
            scheduler['end'] = args.iters
    cfg.train_cfg.max_iters = args.iters
    cfg.val_dataloader = cfg.val_cfg = cfg.val_evaluator = None
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook',
                                        interval=args.iters + 1,
                                        save_last=False)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=50)

    runner = Runner.from_cfg(cfg)
    hook = RSSHook()
    runner.register_hook(hook)
    runner.train()

    iters, main_rss, child_rss = map(np.array, zip(*hook.samples))
    total = main_rss + child_rss
    kept = iters > args.warmup
    print(f'\nRSS over {args.iters} training iterations of {args.config} '
          f'(MiB; workers: the dataloader processes)')
    print('| iteration | training process | workers | total |')
    print('|---|---|---|---|')
    marks = sorted({1, args.warmup, *range(100, args.iters + 1, 100),
                    args.iters})
    for i in marks:
        k = int(np.searchsorted(iters, i))
        print(f'| {iters[k]} | {main_rss[k]:.1f} | {child_rss[k]:.1f} | '
              f'{total[k]:.1f} |')
    slopes = {name: slope_per_100(iters[kept], values[kept])
              for name, values in (('training process', main_rss),
                                   ('workers', child_rss),
                                   ('total', total))}
    print(f'\nSlope after the {args.warmup}-iteration warm-up (least '
          f'squares over iterations {args.warmup + 1}-{args.iters}), MiB per '
          f'100 iterations: ' + ', '.join(f'{name} {value:+.2f}'
                                          for name, value in slopes.items()))
    if args.out:
        os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
        with open(args.out, 'w') as f:
            json.dump(dict(config=args.config, warmup=args.warmup,
                           slope_mib_per_100_iters=slopes,
                           samples=[dict(iter=int(i), main=float(m),
                                         workers=float(c))
                                    for i, m, c in hook.samples]), f)


if __name__ == '__main__':
    main()
