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
import subprocess
import sys
import time

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


def run(cmd, log_file, show=('Epoch(', 'Iter(')):
    """Run a tool, logging everything to a file and echoing progress lines."""
    print('$ ' + ' '.join(cmd), flush=True)
    with open(log_file, 'w') as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        for line in proc.stdout:
            log.write(line)
            if any(s in line for s in show) and 'mmengine - INFO' in line:
                print('   ' + line.split('mmengine - INFO - ')[-1].strip()[:150],
                      flush=True)
        if proc.wait() != 0:
            sys.exit(f'FAILED: {" ".join(cmd)} exited with {proc.returncode}; '
                     f'see {log_file}')


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
    from mmrepvit.analysis import logs
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
    task = TASKS[args.task]
    work = osp.abspath(args.work_dir or osp.join(ROOT, 'work_dirs',
                                                 f'demo_{args.task}'))
    os.makedirs(work, exist_ok=True)
    py = sys.executable

    print(f'== 1/4 demo data in {task["data"]}', flush=True)
    subprocess.run([py, task['generator'], '--out', task['data']], cwd=ROOT,
                   check=True)

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
