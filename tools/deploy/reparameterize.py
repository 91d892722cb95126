#!/usr/bin/env python
# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
"""Fuse the RepViT backbone of a trained detector or segmentor checkpoint
for deployment, and check that the fused backbone computes the same thing.

    python tools/deploy/reparameterize.py CONFIG CHECKPOINT OUT.pth
    python tools/test.py CONFIG OUT.pth

Every Conv-BN and RepVGGDW of the backbone becomes one convolution (see
mmrepvit.RepViT.switch_to_deploy); the rest of the model is unchanged. The
fused checkpoint loads into the same config as it is: RepViT recognises
fused weights and builds its deploy form by itself.
"""
import argparse

from mmrepvit.apis import fuse_checkpoint
from mmrepvit.utils.config import (
    check_output,
    config_file,
    positive_size,
)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', type=config_file)
    parser.add_argument('checkpoint')
    parser.add_argument('out')
    parser.add_argument('--check-size', nargs=2, default=(256, 320),
                        type=positive_size,
                        metavar=('H', 'W'),
                        help='input size of the equivalence check')
    args = parser.parse_args()
    check_output(parser, args.out, args.checkpoint)
    try:
        err = fuse_checkpoint(args.config, args.checkpoint, args.out,
                              tuple(args.check_size))
    except (OSError, ValueError) as e:   # a missing, unfit or fused file
        parser.error(str(e))
    print(f'fused backbone vs original on a random {tuple(args.check_size)} '
          f'input: max relative difference {err:.2e}')
    print(f'saved {args.out}; test it with:\n  python tools/test.py '
          f'{args.config} {args.out}')


if __name__ == '__main__':
    main()
