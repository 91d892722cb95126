#!/usr/bin/env python
# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
"""Fuse the RepViT backbone of a trained detector or segmentor checkpoint
for deployment, and check that the fused backbone computes the same thing.

    python tools/reparameterize.py CONFIG CHECKPOINT OUT.pth
    python tools/test.py CONFIG OUT.pth --cfg-options model.backbone.deploy=True

Every Conv-BN and RepVGGDW of the backbone becomes one convolution (see
mmrepvit.RepViT.switch_to_deploy); the rest of the model is unchanged.
"""
import argparse
import os.path as osp

import torch
from mmengine.config import Config
from mmengine.registry import MODELS, init_default_scope
from mmengine.runner import load_checkpoint

from mmrepvit import switch_to_deploy


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('out')
    parser.add_argument('--check-size', type=int, nargs=2, default=(256, 320),
                        metavar=('H', 'W'),
                        help='input size of the equivalence check')
    args = parser.parse_args()
    if not osp.isfile(args.checkpoint):
        raise FileNotFoundError(
            f'Checkpoint file {args.checkpoint!r} does not exist.')

    cfg = Config.fromfile(args.config)
    init_default_scope(cfg.default_scope)
    cfg.model.pop('pretrained', None)
    cfg.model.backbone.init_cfg = None
    if cfg.model.backbone.get('deploy'):
        raise ValueError(f'{args.config} already builds a deploy-form '
                         f'backbone; give the training-form config.')
    model = MODELS.build(cfg.model)
    ckpt = load_checkpoint(model, args.checkpoint, map_location='cpu',
                           strict=True)
    model.eval()

    x = torch.randn(1, 3, *args.check_size)
    with torch.no_grad():
        before = model.backbone(x)
        if switch_to_deploy(model) == 0:
            raise ValueError(f'{args.config} has no training-form RepViT '
                             f'backbone to fuse.')
        after = model.backbone(x)
    err = max(((a - b).abs().max() / a.abs().max()).item()
              for a, b in zip(before, after))
    print(f'fused backbone vs original on a random {args.check_size} input: '
          f'max relative difference {err:.2e}')
    if err > 1e-4:
        raise RuntimeError(f'fusion changed the backbone output by {err:.2e} '
                           f'(expected float rounding, < 1e-4).')

    meta = dict(ckpt.get('meta', {}), mmrepvit_deploy=True)
    torch.save({'meta': meta, 'state_dict': model.state_dict()}, args.out)
    print(f'saved {args.out}; test it with:\n  python tools/test.py '
          f'{args.config} {args.out} --cfg-options model.backbone.deploy=True')


if __name__ == '__main__':
    main()
