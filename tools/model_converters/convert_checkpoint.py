#!/usr/bin/env python
# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
"""Convert a RepViT checkpoint between the official and timm layouts.

The source layout is detected from the keys; the classification head is kept.
The official layout is written as ``{'model': state_dict}`` (as the official
release files), the timm layout as a plain state dict (as timm saves it). This
is the same conversion :class:`mmrepvit.RepViT` applies in memory when it is
given a timm-layout checkpoint, so converting is never required for loading.

A whole model's checkpoint (MMDetection, MMSegmentation or mmpretrain, whose
backbone keys start with ``backbone.``) is converted with ``--prefix
backbone.``, as ``init_cfg=dict(type='Pretrained', prefix='backbone.')`` and
export_onnx.py's --prefix read it: its RepViT backbone alone is written,
without the neck, heads and meta. A file without RepViT tensors is refused
(exit status 2), naming the prefix to pass where it finds one.

Examples:
    python tools/model_converters/convert_checkpoint.py \\
        repvit_m1_1_distill_300e.pth \\
        repvit_m1_1_timm.pth --to timm
    python tools/model_converters/convert_checkpoint.py timm_repvit_m1_1.pth \\
        repvit_m1_1_official.pth --to official
    python tools/model_converters/convert_checkpoint.py epoch_12.pth \\
        repvit_m1_1_backbone_timm.pth --to timm --prefix backbone.
"""
import argparse
import re
from typing import List, Optional

import torch

from mmrepvit.models.utils import (
    detect_layout,
    official_to_timm,
    timm_to_official,
)
from mmrepvit.utils import extract_state_dict
from mmrepvit.utils.config import check_output

#: The top-level modules of a RepViT state dict: backbone, then the head.
LAYOUT_ROOTS = {'official': ('features.', 'classifier.'),
                'timm': ('stem.', 'stages.', 'head.')}
BACKBONE_ROOTS = ('features.', 'stem.', 'stages.')


def parse_args():
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='\n'.join(__doc__.splitlines()[2:]))
    parser.add_argument('src', help='input checkpoint (local path or URL)')
    parser.add_argument('dst', help='output checkpoint path')
    parser.add_argument('--to', choices=['official', 'timm'], required=True,
                        help='layout to write')
    parser.add_argument('--prefix', help='the key prefix of the RepViT '
                        'backbone in SRC, e.g. backbone. for a whole '
                        'detector, segmentor or classifier: the backbone '
                        'alone is written')
    return parser, parser.parse_args()


def backbone_prefixes(state) -> List[str]:
    """The prefixes under which ``state`` holds RepViT backbone tensors
    (``['backbone.']`` for a whole detector's)."""
    found = {m.group(1) for k in state for m in [re.match(
        r'(.+?\.)(features\.\d+\.|stem\.|stages\.\d+\.)', k)] if m}
    return sorted(found)


def refusal(state, src: str, prefix: Optional[str]) -> Optional[str]:
    """Why ``state`` (the tensors of ``src`` under ``prefix``) is no RepViT
    to convert, or None when it is one."""
    where = src + (f' under --prefix {prefix!r}' if prefix else '')
    if not any(k.startswith(BACKBONE_ROOTS) for k in state):
        inner = backbone_prefixes(state)
        if inner:
            roots = sorted({k.split('.')[0] + '.' for k in state})
            return (f'{where} holds a whole model (keys under {roots[:8]}) '
                    f'with its RepViT backbone under {inner[0]!r}: pass '
                    f'--prefix {(prefix or "") + inner[0]} to convert the '
                    f'backbone alone.')
        return (f'{where} holds no RepViT backbone tensors (keys '
                f'{list(state)[:5]}); expected official (features.N...) or '
                f'timm (stem., stages.) keys.' if state else
                f'{where} holds no tensors.')
    layout = detect_layout(state)
    others = [k for k in state if not k.startswith(LAYOUT_ROOTS[layout])]
    if others:
        return (f'{where} holds tensors that are no part of a RepViT in '
                f'the {layout} layout ({", ".join(LAYOUT_ROOTS[layout])}), '
                f'e.g. {others[:5]}: convert a RepViT state dict alone, or '
                f'pass --prefix to pick the backbone out of a whole model.')
    return None


def main():
    parser, args = parse_args()
    check_output(parser, args.dst, args.src)
    source = f'checkpoint {args.src!r}'
    try:
        state = extract_state_dict(args.src, args.prefix, source)
    except (KeyError, TypeError) as e:   # no such prefix; not tensors
        parser.error(e.args[0])
    problem = refusal(state, args.src, args.prefix)
    if problem:
        parser.error(problem)
    layout = detect_layout(state)
    try:
        if layout == args.to:
            print(f'{args.src} is already in the {layout} layout; writing '
                  f'it unchanged.')
        elif args.to == 'timm':
            state = official_to_timm(state)
        else:
            state = timm_to_official(state)
    except ValueError as e:   # a module the other layout has no place for
        parser.error(f'{args.src}: {e}')
    torch.save({'model': state} if args.to == 'official' else state, args.dst)
    print(f'Wrote {len(state)} tensors in the {args.to} layout to {args.dst} '
          f'(read {layout} layout from {args.src}'
          + (f', prefix {args.prefix!r}' if args.prefix else '') + ').')


if __name__ == '__main__':
    main()
