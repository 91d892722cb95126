#!/usr/bin/env python
# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
"""The main job on built-in demo data, with no downloads, on a CPU.

``python tools/demo.py det`` (the default): generate the shapes dataset,
evaluate the untrained Mask R-CNN + RepViT-M0.6 (COCO box and mask AP), train
it from scratch, evaluate it again and draw its predictions.

``python tools/demo.py seg``: the same for Semantic FPN + RepViT-M0.6 on the
generated ADE20K-layout textures dataset (mIoU).

Logs go to ``work_dirs/demo_{det,seg}/``, the training curves to
``work_dirs/demo_{det,seg}/training_curves.png`` (beside the drawn predictions
in ``vis/``); the console shows progress only.
"""
import argparse
import glob
import json
import os
import os.path as osp
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))

TASKS = {
    'det': dict(
        config='configs/det/repvit_m0_6_maskrcnn_demo.py',
        data='data/demo_coco',
        generator='tools/dataset_converters/make_demo_coco.py',
        metrics={'box AP': 'coco/bbox_mAP', 'box AP50': 'coco/bbox_mAP_50',
                 'mask AP': 'coco/segm_mAP',
                 'mask AP50': 'coco/segm_mAP_50'}),
    'seg': dict(
        config='configs/seg/repvit_m0_6_fpn_demo.py',
        data='data/demo_ade',
        generator='tools/dataset_converters/make_demo_ade.py',
        metrics={'mIoU (%)': 'mIoU', 'aAcc (%)': 'aAcc'}),
}


class Stopped(Exception):
    """SIGINT, SIGTERM or SIGHUP reached the demo (``stop_on_signals``)."""

    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def stop_on_signals():
    """Turn SIGINT, SIGTERM and SIGHUP into ``Stopped``, so that ``run``
    stops the tool it is waiting for instead of leaving it running without
    a parent (Ctrl-C reaches the whole process group, ``kill PID`` only the
    demo)."""
    signums = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def handler(signum, frame):
        for s in signums:      # a second signal must not cut the clean-up
            signal.signal(s, signal.SIG_IGN)
        if _starting.active:   # ``run`` raises it once it holds the tool
            _starting.signum = signum
            return
        raise Stopped(signum)
    for signum in signums:
        signal.signal(signum, handler)


# While ``run`` starts a tool, a signal is held here instead of raised: raised
# inside Popen (after the fork) or before ``run`` holds the process, it would
# leave the new tool running without a parent.
_starting = SimpleNamespace(active=False, signum=None)


def run(cmd, log_file=None, show=('Epoch(', 'Iter(')):
    """Run a tool, logging everything to LOG_FILE and echoing progress lines
    (without LOG_FILE, its output goes to the console). If the demo is
    stopped meanwhile, the tool is stopped too: SIGTERM, then SIGKILL after
    10 s."""
    print('$ ' + ' '.join(cmd), flush=True)
    log = open(log_file, 'w') if log_file else None
    _starting.active = True
    try:
        proc = subprocess.Popen(cmd, cwd=ROOT, text=True,
                                stdout=subprocess.PIPE if log else None,
                                stderr=subprocess.STDOUT if log else None)
    except BaseException:   # no tool to stop
        _starting.active = False
        if log:
            log.close()
        if _starting.signum is not None:
            raise Stopped(_starting.signum)
        raise
    try:
        _starting.active = False
        if _starting.signum is not None:
            raise Stopped(_starting.signum)
        for line in (proc.stdout if log else ()):
            log.write(line)
            if any(s in line for s in show) and 'mmengine - INFO' in line:
                message = line.split('mmengine - INFO - ')[-1].strip()
                print('   ' + message[:150], flush=True)
        proc.wait()
    except BaseException:   # Stopped, or a failure while echoing
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        raise
    finally:
        if log:
            log.close()
    if proc.returncode != 0:
        where = f'; see {log_file}' if log else ''
        sys.exit(f'FAILED: {" ".join(cmd)} exited with {proc.returncode}'
                 f'{where}')


def metrics_of(work_dir):
    """Metrics MMEngine's test loop wrote to WORK_DIR/<timestamp>/*.json."""
    files = sorted(glob.glob(osp.join(work_dir, '*', '*.json')))
    if not files:
        sys.exit(f'No metrics file under {work_dir}.')
    with open(files[-1]) as f:
        return json.load(f)


def plot_training_curves(work_dir):
    """Plot the newest training run in WORK_DIR (losses, lr, validation
    metrics) into WORK_DIR/training_curves.png; returns the PNG's path and
    the run's summary."""
    from mmrepvit.utils import logs
    run = logs.load_log(work_dir)
    png = logs.plot_logs([run], osp.join(work_dir, 'training_curves.png'),
                         title=f'{run.name}: training curves')
    return png, logs.format_summary(logs.summarize(run))


def save_untrained(config, path):
    """The model as training starts (same seed and init), as a checkpoint."""
    import torch
    from mmengine.config import Config
    from mmengine.logging import MMLogger
    from mmengine.registry import MODELS, init_default_scope
    from mmengine.runner import set_random_seed

    import mmrepvit  # noqa: F401

    # A current logger at WARNING keeps MMEngine's per-parameter init report
    # off the console.
    MMLogger.get_instance('mmrepvit_demo', log_level='WARNING')
    cfg = Config.fromfile(osp.join(ROOT, config))
    init_default_scope(cfg.default_scope)
    set_random_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    torch.save({'state_dict': model.state_dict()}, path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('task', nargs='?', default='det', choices=TASKS)
    parser.add_argument('--work-dir', help='default: work_dirs/demo_TASK')
    args = parser.parse_args()
    stop_on_signals()
    try:
        demo(args)
    except Stopped as stop:
        print(f'Stopped by {stop}; the tool it was running was stopped too.',
              file=sys.stderr)
        sys.exit(128 + stop.signum)   # as a shell reports a signalled job


def demo(args):
    task = TASKS[args.task]
    work = osp.abspath(args.work_dir or osp.join(ROOT, 'work_dirs',
                                                 f'demo_{args.task}'))
    os.makedirs(work, exist_ok=True)
    py = sys.executable

    print(f'== 1/4 demo data in {task["data"]}', flush=True)
    run([py, task['generator'], '--out', task['data']])

    print('== 2/4 untrained model', flush=True)
    untrained = osp.join(work, 'untrained.pth')
    save_untrained(task['config'], untrained)
    run([py, 'tools/test.py', task['config'], untrained, '--work-dir',
         osp.join(work, 'untrained')], osp.join(work, 'test_untrained.log'))

    print(f'== 3/4 training from scratch (log: {work}/train.log)', flush=True)
    start = time.time()
    run([py, 'tools/train.py', task['config'], '--work-dir', work],
        osp.join(work, 'train.log'))
    train_minutes = (time.time() - start) / 60
    with open(osp.join(work, 'last_checkpoint')) as f:
        checkpoint = f.read().strip()

    print('== 4/4 testing the trained model', flush=True)
    vis = osp.join(work, 'vis')
    run([py, 'tools/test.py', task['config'], checkpoint, '--work-dir',
         osp.join(work, 'test'), '--show-dir', vis],
        osp.join(work, 'test.log'))

    before, after = metrics_of(osp.join(work, 'untrained')), metrics_of(
        osp.join(work, 'test'))
    print(f'\nRepViT-M0.6 demo ({args.task}), trained for '
          f'{train_minutes:.1f} min on this machine:')
    print(f'  {"metric":<10} {"untrained":>10} {"trained":>10}')
    for name, key in task['metrics'].items():
        print(f'  {name:<10} {before[key]:>10.3f} {after[key]:>10.3f}')
    drawn = sorted(f for f in glob.glob(osp.join(vis, '**', '*'),
                                        recursive=True)
                   if f.endswith(('.png', '.jpg')))
    print(f'Predictions drawn on {len(drawn)} images, e.g. '
          f'{drawn[0] if drawn else "(none)"}')
    curves, summary = plot_training_curves(work)
    print(f'Training curves: {curves}\n{summary}')
    print(f'Checkpoint: {checkpoint}')


if __name__ == '__main__':
    main()
