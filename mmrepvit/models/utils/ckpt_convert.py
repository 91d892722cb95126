# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
"""RepViT state dicts: official <-> timm layout, form detection, the
backbone part of a checkpoint and its fit to a backbone."""
import re
from collections import OrderedDict
from typing import Dict, List, NamedTuple, Optional, Tuple, Union

import torch

from ...utils.checkpoint import extract_state_dict

#: Keys only the training / only the fused form has (a Conv2dBN's ``c``;
#: fused, a conv in its place).
UNFUSED_KEYS = re.compile(r'features\.\d+\..*\.c\.weight$')
FUSED_KEYS = re.compile(r'features\.(0|\d+\.(token_mixer|channel_mixer\.m))'
                        r'\.[02]\.weight$')
StateDict = 'OrderedDict[str, torch.Tensor]'

# Renames inside one block, official (features.{i}.*) -> timm.
_STRIDE1_MAP = (('token_mixer.0.', 'token_mixer.'), ('token_mixer.1.', 'se.'),
                ('channel_mixer.m.0.', 'channel_mixer.conv1.'),
                ('channel_mixer.m.2.', 'channel_mixer.conv2.'))
_STRIDE2_MAP = (('token_mixer.0.', 'spatial_downsample.'),
                ('token_mixer.2.', 'channel_downsample.'),
                ('channel_mixer.m.0.', 'ffn.conv1.'),
                ('channel_mixer.m.2.', 'ffn.conv2.'))
_TOP_MAP = (('features.0.0.', 'stem.conv1.'), ('features.0.2.', 'stem.conv2.'),
            ('classifier.classifier.', 'head.head.'),
            ('classifier.classifier_dist.', 'head.head_dist.'))


def detect_layout(state: Dict[str, torch.Tensor]) -> str:
    """``'timm'`` for timm's ``stem``/``stages`` keys, else ``'official'``."""
    timm = any(k.startswith(('stem.', 'stages.')) for k in state)
    return 'timm' if timm else 'official'


def _convert(state: Dict[str, torch.Tensor], blocks: dict,
             to_timm: bool) -> StateDict:
    """Rename keys; ``blocks``: official block prefix -> (timm's, table)."""
    pairs = list(_TOP_MAP) + [(f'{official}.{a}', f'{timm}.{b}')
                              for official, (timm, table) in blocks.items()
                              for a, b in table]
    if not to_timm:
        pairs = [(b, a) for a, b in pairs]
    out = OrderedDict()
    for k, v in state.items():
        new = next((b + k[len(a):] for a, b in pairs if k.startswith(a)), None)
        if new is None:
            block = re.match(r'(features\.\d+)\.', k)
            if to_timm and block and block[1] in blocks:
                where = ('a stride-2 block (SE before the 1x1 conv)' if
                         blocks[block[1]][1] is _STRIDE2_MAP else 'this block')
                raise ValueError(f'{k!r} has no counterpart in timm\'s '
                                 f'layout: timm has no such module in '
                                 f'{where}.')
            layout = 'an official' if to_timm else 'a timm'
            raise ValueError(f'Unrecognised key {k!r} in {layout}-layout '
                             f'RepViT state dict.')
        if to_timm and '.downsample.pre_block.se.' in new:
            raise ValueError(f'{k!r}: timm\'s pre_block has no SE, so this '
                             f'network cannot be written in timm\'s layout.')
        out[new] = v
    return out


def official_to_timm(state: Dict[str, torch.Tensor]) -> StateDict:
    """Convert an official-layout RepViT state dict to timm's layout.

    Args:
        state (dict): ``features.{i}`` keys (and ``classifier.`` ones).

    Returns:
        OrderedDict: The same tensors under timm's ``stem``/``stages`` keys.

    Raises:
        ValueError: A key has no place in timm's layout.
    """
    found = [m for m in map(re.compile(r'features\.(\d+)\.(token_mixer'
                                       r'\.2\.)?').match, state) if m]
    indices = sorted({int(m[1]) for m in found} - {0})
    stride2 = {int(m[1]) for m in found if m[2]}
    if indices and indices[0] in stride2:
        raise ValueError('The first RepViT block must have stride 1.')
    blocks, stage, j = {}, 0, 0
    for i in indices:
        if i + 1 in stride2:
            name = (f'stages.{stage + 1}.downsample.pre_block', _STRIDE1_MAP)
        elif i in stride2:
            stage, j = stage + 1, 0
            name = (f'stages.{stage}.downsample', _STRIDE2_MAP)
        else:
            name = (f'stages.{stage}.blocks.{j}', _STRIDE1_MAP)
            j += 1
        blocks[f'features.{i}'] = name
    return _convert(state, blocks, to_timm=True)


def timm_to_official(state: Dict[str, torch.Tensor]) -> StateDict:
    """Convert a timm-layout RepViT state dict to the official layout.

    Args:
        state (dict): timm's ``stem``/``stages`` (and ``head``) keys.

    Returns:
        OrderedDict: The same tensors under ``features.{i}`` keys.

    Raises:
        ValueError: A key is not one of timm's RepViT keys.
    """
    depths, has_down = {}, set()
    for k in state:
        m = re.match(r'stages\.(\d+)\.(blocks\.(\d+)|downsample)\.', k)
        if m:
            s, j = int(m.group(1)), m.group(3)
            if j is None:
                has_down.add(s)
            depths[s] = max(depths.get(s, 0), 0 if j is None else int(j) + 1)
    names = []   # timm's blocks in order: features 1, 2, ...
    for s in sorted(depths):
        if s in has_down:
            names += [(f'stages.{s}.downsample.pre_block', _STRIDE1_MAP),
                      (f'stages.{s}.downsample', _STRIDE2_MAP)]
        names += [(f'stages.{s}.blocks.{j}', _STRIDE1_MAP)
                  for j in range(depths[s])]
    blocks = {f'features.{i}': name for i, name in enumerate(names, 1)}
    return _convert(state, blocks, to_timm=False)


def is_fused(state: Dict[str, torch.Tensor]) -> bool:
    """Whether an official-layout state dict holds a fused RepViT."""
    return any(map(FUSED_KEYS.match, state))


def is_unfused(state: Dict[str, torch.Tensor]) -> bool:
    """Whether an official-layout state dict holds a training-form RepViT."""
    return any(map(UNFUSED_KEYS.match, state))


class BackboneState(NamedTuple):
    """The backbone tensors of a checkpoint, in the official layout."""
    state: StateDict
    layout: str                 # official / timm
    dropped_head: List[str]
    missing: List[str]
    unexpected: List[str]


def backbone_state_dict(ckpt: Union[str, dict], prefix: Optional[str] = None,
                        source: str = 'checkpoint',
                        check: Optional[dict] = None,
                        map_location='cpu') -> BackboneState:
    """The RepViT backbone tensors (heads dropped) of a checkpoint file, URL
    or dict, under ``prefix``, in the official layout; with ``check`` (the
    other arguments of :func:`check_backbone_fit`) checked to fit, and
    ``source`` naming it in errors."""
    state = extract_state_dict(ckpt, prefix, source, map_location)
    layout = detect_layout(state)
    if layout == 'timm':
        state = timm_to_official(state)
    dropped = [k for k in state if k.startswith(('classifier.', 'head.'))]
    for k in dropped:
        del state[k]
    missing, unexpected = (check_backbone_fit(state, source=source, **check)
                           if check else ([], []))
    return BackboneState(state, layout, dropped, missing, unexpected)


def check_backbone_fit(state: Dict[str, torch.Tensor],
                       training: Dict[str, torch.Tensor],
                       deploy: Optional[Dict[str, torch.Tensor]],
                       source: str, arch: str, in_channels: int
                       ) -> Tuple[List[str], List[str]]:
    """Check official-layout weights against a backbone's ``training`` and
    (built fused, else None) ``deploy`` state dicts; return the missing and
    the unexpected keys. A ValueError names ``source``, ``arch`` or
    ``in_channels`` where they do not fit."""
    fused = is_fused(state)
    if fused and deploy is None:
        raise ValueError(
            f'{source} holds a fused (re-parameterised) RepViT; build the '
            f'backbone with deploy=True to load it.')
    own = deploy if fused else training
    mismatched = [
        f'{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}'
        for k, v in state.items() if k in own and own[k].shape != v.shape]
    stem = 'features.0.0.c.weight'
    if len(mismatched) == 1 and mismatched[0].startswith(stem + ':') and \
            state[stem].shape[1] != own[stem].shape[1]:
        theirs = state[stem].shape[1]
        raise ValueError(
            f'{source} was trained on {theirs}-channel images and this '
            f'backbone takes in_channels={in_channels}: only the first '
            f'convolution ({stem}, {tuple(state[stem].shape)} vs '
            f'{tuple(own[stem].shape)}) differs. Build the backbone with '
            f'in_channels={theirs}, or adapt that tensor (e.g. repeat the '
            f'mean of its RGB kernels along dim 1) and save the checkpoint.')
    if mismatched:
        raise ValueError(
            f'{source} does not fit RepViT arch {arch!r}: {len(mismatched)} '
            f'tensors differ in shape (is it a checkpoint of another arch?), '
            f'e.g. {mismatched[:5]}.')
    if not own.keys() & state.keys():
        raise ValueError(
            f'No tensor of {source} matches the RepViT backbone: its keys '
            f'look like {list(state)[:5]}, the backbone\'s like '
            f'{list(own)[:3]}. For a whole detector or segmentor checkpoint '
            f"pass prefix='backbone.' (export_onnx.py: --prefix backbone.).")
    return ([k for k in own if k not in state],
            [k for k in state if k not in own])
