# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
"""Checkpoint files as state dicts: safe reading, official <-> timm layout
conversion, fused-form detection. Nothing here knows the model; the backbone
decides how to load what these functions return
(:meth:`mmrepvit.RepViT.load_pretrained`)."""
import os
import pickle
import re
import urllib.error
from collections import OrderedDict
from typing import Dict, List, NamedTuple, Optional

import torch

HEAD_PREFIXES = ('classifier.', 'head.')

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


def read_checkpoint(filename: str, map_location='cpu') -> dict:
    """Read a checkpoint from a local path or an http(s) URL without executing
    code from it (``torch.load(..., weights_only=True)``); a local
    ``.safetensors`` file (timm's weights on the Hugging Face Hub) is read
    too, as the dict of its tensors.

    Raises:
        FileNotFoundError: the local path does not exist.
        ConnectionError: the URL cannot be downloaded.
        ValueError: the file is not a PyTorch checkpoint (truncated,
            corrupted, or another kind of file such as a saved HTML page)
            nor a safetensors file.
        RuntimeError: the file holds objects other than tensors and plain
            containers, which only an unsafe unpickling could read.
    """
    filename = str(filename)
    if re.match(r'^https?://', filename):
        try:
            return _torch_load(
                filename, lambda: torch.hub.load_state_dict_from_url(
                    filename, map_location=map_location, weights_only=True,
                    progress=False))
        except urllib.error.URLError as e:
            raise ConnectionError(
                f'Could not download the checkpoint {filename} ({e.reason}). '
                f'Download it by hand (from a machine that can reach it) and '
                f'give its local path instead, e.g. '
                f'init_cfg.checkpoint=/path/to/{filename.rsplit("/", 1)[-1]}.'
            ) from e
    if '://' in filename:
        raise ValueError(
            f'Unsupported checkpoint location {filename!r}: use a local '
            f'path or an http(s) URL.')
    if not os.path.isfile(filename):
        raise FileNotFoundError(
            f'Checkpoint file {filename!r} does not exist (looked for '
            f'{os.path.abspath(filename)!r}); check the path (the '
            f'checkpoint argument of a tool, or init_cfg.checkpoint, '
            f'load_from or --resume in a config).')
    with open(filename, 'rb') as f:
        head = f.read(9)
    magic = head[:2]
    if _is_safetensors(head):
        return _read_safetensors(filename, map_location)
    # torch.save writes a zip archive ('PK'); old files are a pickle (0x80).
    if magic != b'PK' and not magic.startswith(b'\x80'):
        raise _not_a_checkpoint(filename, f'it starts with {magic!r}')
    return _torch_load(filename, lambda: torch.load(
        filename, map_location=map_location, weights_only=True))


#: safetensors dtype names -> torch dtypes (the ones weights use).
_SAFETENSORS_DTYPES = {
    'F64': torch.float64, 'F32': torch.float32, 'F16': torch.float16,
    'BF16': torch.bfloat16, 'I64': torch.int64, 'I32': torch.int32,
    'I16': torch.int16, 'I8': torch.int8, 'U8': torch.uint8,
    'BOOL': torch.bool}


def _is_safetensors(head: bytes) -> bool:
    # an 8-byte little-endian header length, then the JSON header
    return len(head) == 9 and head[8:9] == b'{'


def _read_safetensors(filename: str, map_location='cpu') -> dict:
    """The tensors of a safetensors file (the format timm's weights come in
    on the Hugging Face Hub), read from its JSON header and raw data: the
    format holds no code, so reading it is safe."""
    import json
    with open(filename, 'rb') as f:
        data = f.read()
    try:
        length = int.from_bytes(data[:8], 'little')
        header = json.loads(data[8:8 + length])
        header.pop('__metadata__', None)
        state, start = OrderedDict(), 8 + length
        for key, info in header.items():
            dtype = _SAFETENSORS_DTYPES[info['dtype']]
            begin, end = info['data_offsets']
            if not 0 <= begin <= end <= len(data) - start:
                raise ValueError(f'{key!r} lies outside the file')
            raw = bytearray(data[start + begin:start + end])
            tensor = (torch.frombuffer(raw, dtype=dtype) if raw else
                      torch.empty(0, dtype=dtype))
            state[key] = tensor.reshape(info['shape']).to(map_location)
    except (ValueError, KeyError, TypeError, RuntimeError) as e:
        raise _not_a_checkpoint(
            filename, f'a broken safetensors file: {type(e).__name__} {e}'
        ) from e
    return state


def _not_a_checkpoint(filename: str, why: str) -> ValueError:
    again = 'Download it again'
    if '://' in filename:
        again += (f' (delete the cached copy in '
                  f'{os.path.join(torch.hub.get_dir(), "checkpoints")} first)')
    return ValueError(
        f'{filename!r} is not a valid PyTorch checkpoint ({why}): it is '
        f'truncated or corrupted, or another kind of file (an HTML error '
        f'page saved as .pth, for example). {again}.')


def _torch_load(filename: str, load):
    """``load()``, with torch's errors turned into ones that say what is
    wrong with ``filename`` and what to do."""
    try:
        return load()
    except pickle.UnpicklingError as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        # Refusals name the global or call (ours say 'Refusing ...'); a
        # broken file fails on a byte that is no pickle opcode.
        refused = next((ln for ln in lines if 'GLOBAL' in ln or
                        'Refusing' in ln or 'reduce' in ln), None)
        if refused is None:   # not an allow-list refusal: a broken file
            generic = ('Weights only load failed', 'Please file an issue',
                       'Check the documentation')
            detail = [ln for ln in lines if not ln.startswith(generic)]
            raise _not_a_checkpoint(
                filename, detail[0] if detail else 'unreadable pickle') from e
        raise RuntimeError(
            f'Refusing to load {filename!r}: it holds Python objects other '
            f'than tensors and plain containers, and unpickling those could '
            f'run code from the file ({refused}). mmrepvit reads weights '
            f'with torch.load(weights_only=True). If you trust the file, save '
            f'only its tensors and load that file instead: for a whole '
            f'pickled model, torch.save(torch.load(path, weights_only=False)'
            f".state_dict(), 'weights.pth'); for a dict that holds one, its "
            f"state-dict entry, e.g. torch.save(torch.load(path, "
            f"weights_only=False)['model'], 'weights.pth').") from e
    except EOFError as e:   # an empty file
        raise _not_a_checkpoint(filename, 'the file is empty') from e
    except RuntimeError as e:
        if 'PytorchStreamReader' not in str(e):
            raise
        # A zip archive cut short or damaged.
        raise _not_a_checkpoint(filename, str(e).splitlines()[0]) from e


def extract_state_dict(ckpt: dict, prefix: Optional[str] = None,
                       source: str = 'checkpoint') -> 'OrderedDict[str, torch.Tensor]':
    """Return the tensors of a checkpoint: the ``state_dict`` entry (MMEngine,
    MMDetection, MMSegmentation), the ``model`` entry (official RepViT) or the
    dict itself (plain state dict). ``module.`` (DDP) is stripped; with
    ``prefix`` only keys under it are kept, with the prefix removed."""
    if not isinstance(ckpt, dict):
        raise TypeError(f'{source} holds a {type(ckpt).__name__}, not a dict '
                        f'of tensors.')
    for key in ('state_dict', 'model', 'module'):
        if isinstance(ckpt.get(key), dict):
            ckpt = ckpt[key]
            break
    state = OrderedDict()
    for k, v in ckpt.items():
        if not isinstance(v, torch.Tensor):
            raise TypeError(
                f'{source}: entry {k!r} is a {type(v).__name__}, not a tensor; '
                f'expected a state dict or a dict with a "state_dict" or '
                f'"model" entry (top-level keys: {list(ckpt)[:8]}).')
        state[k[7:] if k.startswith('module.') else k] = v
    if prefix:
        if not prefix.endswith('.'):
            prefix += '.'
        kept = OrderedDict((k[len(prefix):], v) for k, v in state.items()
                           if k.startswith(prefix))
        if not kept:
            roots = sorted({k.split('.')[0] + '.' for k in state})
            raise KeyError(
                f'{source}: no key starts with prefix {prefix!r}; its keys '
                f'start with {roots[:10]}.')
        state = kept
    return state


def detect_layout(state: Dict[str, torch.Tensor]) -> str:
    """``'timm'`` for timm's ``stem``/``stages`` layout, else ``'official'``."""
    if any(k.startswith(('stem.', 'stages.')) for k in state):
        return 'timm'
    return 'official'


def _rename(key: str, table, reverse: bool = False) -> Optional[str]:
    for a, b in table:
        src, dst = (b, a) if reverse else (a, b)
        if key.startswith(src):
            return dst + key[len(src):]
    return None


def official_to_timm(state: Dict[str, torch.Tensor]) -> 'OrderedDict[str, torch.Tensor]':
    """Convert an official-layout (``features.{i}``) RepViT state dict to timm's
    layout. The block structure is read from the keys (stride-2 blocks are the
    ones with a ``token_mixer.2``), so no arch is needed."""
    blocks = sorted({int(m.group(1)) for k in state
                     for m in [re.match(r'features\.(\d+)\.', k)] if m} - {0})
    stride2 = {i for i in blocks if any(
        k.startswith(f'features.{i}.token_mixer.2.') for k in state)}
    if blocks and blocks[0] in stride2:
        raise ValueError('The first RepViT block must have stride 1.')
    names, stage, j = {}, 0, 0
    for i in blocks:
        if i + 1 in stride2:
            names[i] = (f'stages.{stage + 1}.downsample.pre_block.', _STRIDE1_MAP)
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


def timm_to_official(state: Dict[str, torch.Tensor]) -> 'OrderedDict[str, torch.Tensor]':
    """Convert a timm-layout RepViT state dict to the official ``features.{i}``
    layout (the inverse of :func:`official_to_timm`)."""
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
    """Whether an official-layout state dict holds a fused (re-parameterised)
    RepViT: the stem's first conv is ``features.0.0.c.weight`` before fusion
    and ``features.0.0.weight`` after."""
    return 'features.0.0.weight' in state


def is_unfused(state: Dict[str, torch.Tensor]) -> bool:
    """Whether an official-layout state dict holds a training-form
    (unfused) RepViT: its stem's first conv is ``features.0.0.c.weight``."""
    return 'features.0.0.c.weight' in state


class BackboneState(NamedTuple):
    """The backbone tensors of a checkpoint, in the official layout."""
    state: 'OrderedDict[str, torch.Tensor]'
    layout: str                 # the layout the file was in: official / timm
    dropped_head: List[str]     # classification-head keys that were dropped


def read_backbone_state(checkpoint: str, prefix: Optional[str] = None,
                        map_location='cpu') -> BackboneState:
    """Read a checkpoint safely and return its RepViT backbone tensors in the
    official ``features.{i}`` layout (see :func:`to_backbone_state`)."""
    return to_backbone_state(read_checkpoint(checkpoint, map_location),
                             prefix, f'checkpoint {checkpoint!r}')


def to_backbone_state(ckpt: dict, prefix: Optional[str] = None,
                      source: str = 'checkpoint') -> BackboneState:
    """The RepViT backbone tensors of a checkpoint already read (what
    :func:`read_checkpoint` returns), in the official ``features.{i}``
    layout: timm-layout files are converted, DDP's ``module.`` and ``prefix``
    (e.g. ``'backbone.'`` for a whole detector) stripped, and
    classification-head tensors dropped. ``source`` names it in errors."""
    state = extract_state_dict(ckpt, prefix, source)
    layout = detect_layout(state)
    if layout == 'timm':
        state = timm_to_official(state)
    dropped = [k for k in state if k.startswith(HEAD_PREFIXES)]
    for k in dropped:
        del state[k]
    return BackboneState(state, layout, dropped)
