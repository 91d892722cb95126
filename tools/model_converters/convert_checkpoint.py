#!/usr/bin/env python
# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
"""Convert a RepViT checkpoint between the official and timm layouts.

The source layout is detected from the keys; the classification head is kept.
The official layout is written as ``{'model': state_dict}`` (as the official
release files), the timm layout as a plain state dict (as timm saves it). This
is the same conversion :class:`mmrepvit.RepViT` applies in memory when it is
given a timm-layout checkpoint, so converting is never required for loading.

Examples:
    python tools/model_converters/convert_checkpoint.py repvit_m1_1_distill_300e.pth \\
        repvit_m1_1_timm.pth --to timm
    python tools/model_converters/convert_checkpoint.py timm_repvit_m1_1.pth \\
        repvit_m1_1_official.pth --to official
"""
import argparse

import torch

from mmrepvit.checkpoint import (detect_layout, extract_state_dict,
                                 official_to_timm, read_checkpoint,
                                 timm_to_official)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('src', help='input checkpoint (local path or URL)')
    parser.add_argument('dst', help='output checkpoint path')
    parser.add_argument('--to', choices=['official', 'timm'], required=True,
                        help='layout to write')
    return parser.parse_args()


def main():
    args = parse_args()
    state = extract_state_dict(read_checkpoint(args.src), source=args.src)
    layout = detect_layout(state)
    if layout == args.to:
        print(f'{args.src} is already in the {layout} layout; writing it '
              f'unchanged.')
    elif args.to == 'timm':
        state = official_to_timm(state)
    else:
        state = timm_to_official(state)
    torch.save({'model': state} if args.to == 'official' else state, args.dst)
    print(f'Wrote {len(state)} tensors in the {args.to} layout to {args.dst} '
          f'(read {layout} layout from {args.src}).')


if __name__ == '__main__':
    main()
