#!/usr/bin/env python
# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
"""Whole-model speed of RepViT-M1.1 detectors and segmentors beside the
ResNet-50 models MMDetection and MMSegmentation ship, in one run.

    python tools/benchmark_models.py det   # Mask R-CNN: predict 1x800x1333,
                                           # train step at the demo size
    python tools/benchmark_models.py seg   # Semantic FPN: predict 512x512
                                           # and 512x2048

Models are built from the configs with random weights (nothing is
downloaded). RepViT is measured in training form and after
mmrepvit.switch_to_deploy(). Medians over --repeats, with the forms
interleaved round by round so that drift in machine load hits all alike.
"""
import argparse
import statistics
import time

import torch
from mmengine.config import Config
from mmengine.hub import get_config
from mmengine.logging import MMLogger
from mmengine.registry import init_default_scope

import mmrepvit
from mmrepvit import switch_to_deploy

from mmrepvit.runner import replace_syncbn

DET = {
    'RepViT-M1.1': 'configs/det/repvit_m1_1_maskrcnn.py',
    'ResNet-50': 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py',
}
SEG = {
    'RepViT-M1.1': 'configs/seg/repvit_m1_1_fpn_ade20k.py',
    'ResNet-50': 'mmseg::sem_fpn/fpn_r50_4xb4-160k_ade20k-512x512.py',
}


def build(config, deploy=False):
    cfg = get_config(config) if '::' in config else Config.fromfile(config)
    init_default_scope(cfg.default_scope)
    cfg.model.pop('pretrained', None)
    cfg.model.backbone.init_cfg = None
    # BN, not SyncBN: one process without CUDA (identical in eval mode).
    replace_syncbn(cfg.model)
    from mmengine.registry import MODELS
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    if deploy:
        model.eval()
        assert switch_to_deploy(model) == 1
    return model


def timed(fn, warmup, repeats):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times


def compare(models, make_fn, warmup, repeats, rounds=3):
    """Median ms of make_fn(model)() per model, interleaved in rounds."""
    fns = {name: make_fn(m) for name, m in models.items()}
    samples = {name: [] for name in models}
    for _ in range(rounds):
        for name, fn in fns.items():
            samples[name] += timed(fn, warmup, max(1, repeats // rounds))
    return {name: statistics.median(s) * 1e3 for name, s in samples.items()}


def inference(packed, features_only=False):
    """make_fn for compare(): one no-grad predict (or backbone + neck)."""

    def make_fn(model):
        model.eval()
        data = model.data_preprocessor(packed, False)

        def fn():
            with torch.no_grad():
                if features_only:
                    model.extract_feat(data['inputs'])
                else:
                    model(**data, mode='predict')
        return fn
    return make_fn


def report(title, ms, base='ResNet-50'):
    print(f'\n{title}')
    print(f'  {"model":<22} {"median ms":>10} {"speed-up vs " + base:>22}')
    for name, v in ms.items():
        print(f'  {name:<22} {v:>10.1f} {ms[base] / v:>21.2f}x')


def build_all(configs):
    """RepViT in training and deploy form, and the ResNet-50 baseline."""
    return {'RepViT-M1.1 train form': build(configs['RepViT-M1.1']),
            'RepViT-M1.1 deploy form': build(configs['RepViT-M1.1'],
                                             deploy=True),
            'ResNet-50': build(configs['ResNet-50'])}


def det(args):
    from mmdet.testing import demo_mm_inputs
    models = build_all(DET)

    image = demo_mm_inputs(1, [[3, 800, 1333]], num_items=[3],
                           with_mask=True)
    report('Mask R-CNN predict, one 800x1333 image (batch 1)',
           compare(models, inference(image), 1, args.repeats))
    report('  of which backbone + FPN (extract_feat)',
           compare(models, inference(image, features_only=True), 1,
                   args.repeats))

    batch = demo_mm_inputs(4, [[3, 256, 256]] * 4, num_items=[3] * 4,
                           with_mask=True)

    def train_step(model):
        model.train()
        data = model.data_preprocessor(batch, True)

        def fn():
            torch.manual_seed(0)
            loss, _ = model.parse_losses(model(**data, mode='loss'))
            loss.backward()
            model.zero_grad(set_to_none=True)
        return fn

    report('Mask R-CNN training step (loss + backward), 4 images 256x256 '
           '(the demo size)', compare(models, train_step, 1, args.repeats))


def seg(args):
    models = build_all(SEG)
    from mmseg.structures import SegDataSample
    for h, w in [(512, 512), (512, 2048)]:
        sample = SegDataSample(metainfo=dict(img_shape=(h, w),
                                             ori_shape=(h, w)))
        packed = dict(inputs=[torch.randint(0, 255, (3, h, w),
                                            dtype=torch.uint8)],
                      data_samples=[sample])
        report(f'Semantic FPN predict, one {h}x{w} image',
               compare(models, inference(packed), 1, args.repeats))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('task', choices=['det', 'seg'])
    parser.add_argument('--repeats', type=int, default=9)
    parser.add_argument('--threads', type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    # Keep MMEngine's per-parameter init report off the console.
    MMLogger.get_instance('mmrepvit_benchmark', log_level='WARNING')
    print(f'torch {torch.__version__}, {args.threads} threads, mmrepvit '
          f'{mmrepvit.__version__}')
    det(args) if args.task == 'det' else seg(args)


if __name__ == '__main__':
    main()
