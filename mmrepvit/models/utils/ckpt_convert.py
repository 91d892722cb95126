# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
"""RepViT state dicts: official <-> timm layout, form detection, the
backbone part of a checkpoint and its fit to a backbone."""
import re
from collections import OrderedDict
from typing import Dict, List, NamedTuple, Optional, Tuple, Union

import torch

from ...utils.checkpoint import extract_state_dict

HEAD_PREFIXES = ('classifier.', 'head.')
STEM_KEY = 'features.0.0.c.weight'
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
    if any(k.startswith(('stem.', 'stages.')) for k in state):
        return 'timm'
    return 'official'


def _rename(key: str, table, reverse: bool = False) -> Optional[str]:
    for a, b in table:
        src, dst = (b, a) if reverse else (a, b)
        if key.startswith(src):
            return dst + key[len(src):]
    return None


def official_to_timm(state: Dict[str, torch.Tensor]) -> StateDict:
    """Convert an official-layout RepViT state dict to timm's layout.

    Args:
        state (dict): ``features.{i}`` keys (and ``classifier.`` ones).

    Returns:
        OrderedDict: The same tensors under timm's ``stem``/``stages`` keys.

    Raises:
        ValueError: A key has no place in timm's layout.
    """
    blocks = sorted({int(m.group(1)) for k in state
                     for m in [re.match(r'features\.(\d+)\.', k)] if m} - {0})
    stride2 = {i for i in blocks if any(
        k.startswith(f'features.{i}.token_mixer.2.') for k in state)}
    if blocks and blocks[0] in stride2:
        raise ValueError('The first RepViT block must have stride 1.')
    names, stage, j = {}, 0, 0
    for i in blocks:
        if i + 1 in stride2:
            names[i] = (f'stages.{stage + 1}.downsample.pre_block.',
                        _STRIDE1_MAP)
        elif i in stride2:
            stage, j = stage + 1, 0
            names[i] = (f'stages.{stage}.downsample.', _STRIDE2_MAP)
        else:
            names[i] = (f'stages.{stage}.blocks.{j}.', _STRIDE1_MAP)
            j += 1
    out = OrderedDict()
    for k, v in state.items():
        new = _rename(k, _TOP_MAP)
        m = re.match(r'features\.(\d+)\.(.*)', k)
        if new is None and m and int(m.group(1)) in names:
            base, table = names[int(m.group(1))]
            inner = _rename(m.group(2), table)
            if inner is None:
                where = ('a stride-2 block (SE before the 1x1 conv)'
                         if table is _STRIDE2_MAP else 'this block')
                raise ValueError(
                    f'{k!r} has no counterpart in timm\'s layout: timm has '
                    f'no such module in {where}.')
            new = base + inner
        if new is None:
            raise ValueError(f'Unrecognised key {k!r} in an official-layout '
                             f'RepViT state dict.')
        if '.downsample.pre_block.se.' in new:
            raise ValueError(f'{k!r}: timm\'s pre_block has no SE, so this '
                             f'network cannot be written in timm\'s layout.')
        out[new] = v
    return out


def timm_to_official(state: Dict[str, torch.Tensor]) -> StateDict:
    """Convert a timm-layout RepViT state dict to the official layout.

    Args:
        state (dict): timm's ``stem``/``stages`` (and ``head``) keys.

    Returns:
        OrderedDict: The same tensors under ``features.{i}`` keys.

    Raises:
        ValueError: A key is not one of timm's RepViT keys.
    """
    blocks: Dict[int, int] = {}
    has_down = set()
    for k in state:
        m = re.match(r'stages\.(\d+)\.(blocks\.(\d+)|downsample)\.', k)
        if m:
            s = int(m.group(1))
            if m.group(3) is not None:
                blocks[s] = max(blocks.get(s, 0), int(m.group(3)) + 1)
            else:
                has_down.add(s)
                blocks.setdefault(s, 0)
    prefixes = []  # (timm prefix, official prefix, inner table)
    idx = 1
    for s in sorted(blocks):
        if s in has_down:
            prefixes += [
                (f'stages.{s}.downsample.pre_block.', f'features.{idx}.',
                 _STRIDE1_MAP),
                (f'stages.{s}.downsample.', f'features.{idx + 1}.',
                 _STRIDE2_MAP)]
            idx += 2
        for j in range(blocks[s]):
            prefixes.append((f'stages.{s}.blocks.{j}.', f'features.{idx}.',
                             _STRIDE1_MAP))
            idx += 1
    out = OrderedDict()
    for k, v in state.items():
        new = _rename(k, _TOP_MAP, reverse=True)
        if new is None:
            for src, dst, table in prefixes:
                if k.startswith(src):
                    inner = _rename(k[len(src):], table, reverse=True)
                    new = None if inner is None else dst + inner
                    break
        if new is None:
            raise ValueError(f'Unrecognised key {k!r} in a timm-layout RepViT '
                             f'state dict.')
        out[new] = v
    return out


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
    """The RepViT backbone tensors of a checkpoint, in the official layout.

    Args:
        ckpt (str | dict): A checkpoint file or URL, or a checkpoint read
            already (:func:`mmrepvit.utils.extract_state_dict` takes both).
        prefix (str, optional): Key prefix of the backbone, e.g.
            ``'backbone.'``. Defaults to ``None``.
        source (str): How errors name it. Defaults to ``'checkpoint'``.
        check (dict, optional): :func:`check_backbone_fit`'s other
            arguments, to check the fit. Defaults to ``None`` (no check).
        map_location: Where a file's tensors are loaded. Defaults to
            ``'cpu'``.

    Returns:
        BackboneState: Tensors (heads dropped), layout, dropped, missing and
        unexpected keys.
    """
    state = extract_state_dict(ckpt, prefix, source, map_location)
    layout = detect_layout(state)
    if layout == 'timm':
        state = timm_to_official(state)
    dropped = [k for k in state if k.startswith(HEAD_PREFIXES)]
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
    """Check backbone weights against the backbone they load into.

    Args:
        state (dict): The weights to load (official layout).
        training (dict): The backbone's training-form state dict.
        deploy (dict, optional): Its deploy-form one; None for a
            training-form backbone.
        source (str): How errors name the checkpoint.
        arch (str): The arch name, for errors.
        in_channels (int): The input channels, for errors.

    Returns:
        tuple[list[str], list[str]]: Missing keys and unexpected keys.

    Raises:
        ValueError: A shape differs, no key matches, or fused weights meet
            a training-form backbone.
    """
    fused = is_fused(state)
    if fused and deploy is None:
        raise ValueError(
            f'{source} holds a fused (re-parameterised) RepViT; build the '
            f'backbone with deploy=True to load it.')
    own = deploy if fused else training
    mismatched = [
        f'{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}'
        for k, v in state.items() if k in own and own[k].shape != v.shape
    ]
    stem = STEM_KEY
    if (len(mismatched) == 1 and stem in state and stem in own
            and state[stem].shape[1] != own[stem].shape[1]):
        raise ValueError(
            f'{source} was trained on {state[stem].shape[1]}-channel '
            f'images and this backbone takes in_channels={in_channels}: '
            f'only the first convolution ({stem}, '
            f'{tuple(state[stem].shape)} vs {tuple(own[stem].shape)}) '
            f'differs. Adapt that tensor in the checkpoint to {in_channels} '
            f'input channels (e.g. repeat the mean of its RGB kernels along '
            f'dim 1) and save it, or build the backbone with in_channels='
            f'{state[stem].shape[1]}.')
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
