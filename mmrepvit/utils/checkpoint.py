# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
"""Checkpoints read without running code, their tensors, ``--resume``'s."""
import glob
import logging
import os
import os.path as osp
import pickle
import re
import urllib.error
import urllib.parse
from collections import OrderedDict
from typing import Dict, List, Optional, Union

import torch
from mmengine.logging import print_log
from mmengine.runner import CheckpointLoader, find_latest_checkpoint

from . import compat
from .checks import checkpoint_problem

_CHECKPOINT_NAME = re.compile(r'^(epoch|iter)_(\d+)\.pth$')


def _download(url: str) -> str:
    """Where ``torch.hub`` caches ``url``, downloaded there if not yet."""
    cached = osp.join(torch.hub.get_dir(), 'checkpoints',
                      osp.basename(urllib.parse.urlparse(url).path))
    if not osp.isfile(cached):
        os.makedirs(osp.dirname(cached), exist_ok=True)
        print_log(f'Downloading {url} to {cached}', logger='current')
        try:
            torch.hub.download_url_to_file(url, cached, progress=False)
        except urllib.error.URLError as e:
            raise ConnectionError(
                f'Could not download the checkpoint {url} ({e.reason}). '
                f'Download it by hand and give its local path instead, e.g. '
                f'/path/to/{osp.basename(cached)} as the checkpoint argument, '
                f'init_cfg.checkpoint or load_from.') from e
    return cached


def read_checkpoint(filename: str, map_location='cpu') -> dict:
    """Read a checkpoint (``weights_only``) without executing code from it.

    Args:
        filename (str): A local ``.pth`` or ``.safetensors`` file, or an
            http(s) URL (cached where ``torch.hub`` keeps checkpoints).
        map_location: Where the tensors are loaded. Defaults to ``'cpu'``.

    Returns:
        dict: What the file holds.

    Raises:
        FileNotFoundError: The local path does not exist.
        ConnectionError: The URL cannot be downloaded.
        ValueError: The file is not a whole PyTorch or safetensors file.
        RuntimeError: It holds objects other than tensors and containers.
    """
    filename = str(filename)
    if re.match(r'^https?://', filename):
        return _torch_load(filename, _download(filename), map_location)
    if '://' in filename:
        raise ValueError(f'Unsupported checkpoint location {filename!r}: use '
                         f'a local path or an http(s) URL.')
    if osp.isdir(filename):
        raise IsADirectoryError(f'Checkpoint {filename!r} is a directory; '
                                f'give a checkpoint file in it.')
    if not osp.isfile(filename):
        raise FileNotFoundError(
            f'Checkpoint file {filename!r} does not exist (looked for '
            f'{osp.abspath(filename)!r}); check the path (the checkpoint '
            f'argument of a tool, or init_cfg.checkpoint, load_from or '
            f'--resume in a config).')
    with open(filename, 'rb') as f:
        head = f.read(9)
    if head[8:9] == b'{':   # safetensors: a header size, then JSON
        from safetensors import SafetensorError
        from safetensors.torch import load_file
        device = str(map_location) if isinstance(
            map_location, (str, torch.device)) else 'cpu'
        try:
            return load_file(filename, device=device)
        except (SafetensorError, ValueError, RuntimeError) as e:
            raise _not_a_checkpoint(
                filename, f'a broken safetensors file: {e}') from e
    # torch.save writes a zip archive ('PK'); old files are a pickle (0x80).
    if head[:2] != b'PK' and not head.startswith(b'\x80'):
        raise _not_a_checkpoint(filename, f'it starts with {head[:2]!r}')
    return _torch_load(filename, filename, map_location)


def _not_a_checkpoint(filename: str, why: str) -> ValueError:
    again = 'Download it again'
    if '://' in filename:
        again += (f' (delete the cached copy in '
                  f'{osp.join(torch.hub.get_dir(), "checkpoints")} first)')
    return ValueError(
        f'{filename!r} is not a valid PyTorch checkpoint ({why}): it is cut '
        f'short, corrupted or another kind of file. {again}.')


def _torch_load(filename: str, path: str, map_location):
    """Safe ``torch.load`` of ``path``, ``filename`` or its download."""
    try:
        return torch.load(path, map_location=map_location,
                          **compat.SAFE_LOAD_KWARGS)
    except pickle.UnpicklingError as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        # Refusals name a GLOBAL or call; a broken file, a bad opcode.
        refused = next((ln for ln in lines if 'GLOBAL' in ln or
                        'Refusing' in ln or 'reduce' in ln), None)
        if refused is None:
            generic = ('Weights only load failed', 'Please file an issue',
                       'Check the documentation')
            raise _not_a_checkpoint(filename, next(
                (ln for ln in lines if not ln.startswith(generic)),
                'unreadable pickle')) from e
        raise RuntimeError(
            f'Refusing to load {filename!r}: it holds Python objects other '
            f'than tensors and plain containers, and unpickling them could '
            f'run code ({refused}); mmrepvit reads weights with '
            f'torch.load(weights_only=True). If you trust the file, save '
            f'only its tensors and load that file instead: for a whole '
            f'pickled model, torch.save(torch.load(path, weights_only=False)'
            f".state_dict(), 'weights.pth'); for a dict that holds one, its "
            f"state-dict entry, e.g. torch.save(torch.load(path, "
            f"weights_only=False)['model'], 'weights.pth').") from e
    except EOFError as e:   # an empty pickle
        raise _not_a_checkpoint(filename, 'the file is empty') from e
    except RuntimeError as e:
        if 'PytorchStreamReader' not in str(e):   # not a damaged archive
            raise
        raise _not_a_checkpoint(filename, str(e).splitlines()[0]) from e
    except OSError as e:
        # An archive cut in its first kilobytes: a bare, unhelpful OSError.
        raise _not_a_checkpoint(
            filename, checkpoint_problem(path) or str(e)) from e


def extract_state_dict(checkpoint: Union[str, dict],
                       prefix: Optional[str] = None,
                       source: Optional[str] = None,
                       map_location='cpu') -> Dict[str, torch.Tensor]:
    """The tensors of a checkpoint (or its ``state_dict``/``model`` entry).

    Args:
        checkpoint (str | dict): A checkpoint, or a file or URL of one (a
            URL read by MMEngine's ``CheckpointLoader``: rank 0 first).
        prefix (str, optional): Keep only the keys under it, without it,
            e.g. ``'backbone.'``. Defaults to None (all).
        source (str, optional): How errors name it. Defaults to None
            (``"checkpoint 'PATH'"``, or ``'checkpoint'`` for a dict).
        map_location: Where a file's tensors go. Defaults to ``'cpu'``.

    Returns:
        OrderedDict: Key -> tensor, DDP's ``module.`` prefix stripped.

    Raises:
        TypeError: It holds something other than tensors.
        KeyError: No key starts with ``prefix``.
    """
    if isinstance(checkpoint, str):
        source = source or f'checkpoint {checkpoint!r}'
        # a URL through MMEngine's loader (compat.safe_mmengine_loads)
        read = (CheckpointLoader.load_checkpoint
                if re.match(r'^https?://', checkpoint) else read_checkpoint)
        checkpoint = read(checkpoint, map_location)
    source = source or 'checkpoint'
    if not isinstance(checkpoint, dict):
        raise TypeError(f'{source} holds a {type(checkpoint).__name__}, not '
                        f'a dict of tensors.')
    ckpt = next((checkpoint[key] for key in ('state_dict', 'model', 'module')
                 if isinstance(checkpoint.get(key), dict)), checkpoint)
    state = OrderedDict()
    for k, v in ckpt.items():
        if not isinstance(v, torch.Tensor):
            raise TypeError(
                f'{source}: entry {k!r} is a {type(v).__name__}, not a '
                f'tensor; expected a state dict or a dict with a "state_dict" '
                f'or "model" entry (top-level keys: {list(ckpt)[:8]}).')
        state[k[7:] if k.startswith('module.') else k] = v
    if prefix:
        prefix = prefix if prefix.endswith('.') else prefix + '.'
        kept = OrderedDict((k[len(prefix):], v) for k, v in state.items()
                           if k.startswith(prefix))
        if not kept:
            roots = sorted({k.split('.')[0] + '.' for k in state})
            raise KeyError(
                f'{source}: no key starts with prefix {prefix!r}; its keys '
                f'start with {roots[:10]}.')
        state = kept
    return state


def _fallbacks(directories: List[str], named: Optional[str]) -> List[str]:
    """Checkpoints of ``named``'s kind before it (or all), newest first."""
    found = [(m.group(1), int(m.group(2)), path)
             for directory in dict.fromkeys(map(osp.abspath, directories))
             for path in glob.glob(osp.join(directory, '*.pth'))
             if (m := _CHECKPOINT_NAME.match(osp.basename(path)))]
    if named is None:
        return sorted((path for _, _, path in found), key=osp.getmtime,
                      reverse=True)
    match = _CHECKPOINT_NAME.match(osp.basename(named))
    if match is None:
        return []
    kind, step = match.group(1), int(match.group(2))
    return [path for k, n, path in sorted(found, reverse=True)
            if k == kind and n < step]


def find_resume_checkpoint(work_dir: str) -> Optional[str]:
    """The checkpoint that ``--resume`` (without a path) continues from.

    The file ``last_checkpoint`` names if whole, else (with a warning) the
    newest whole checkpoint before it, in its directory or ``work_dir``.

    Args:
        work_dir (str): The training run's work directory.

    Returns:
        str | None: The checkpoint, or None without ``last_checkpoint``.

    Raises:
        RuntimeError: No checkpoint is whole.
    """
    last_file = osp.join(work_dir, 'last_checkpoint')
    if not osp.isfile(last_file):
        return None
    named = find_latest_checkpoint(work_dir) or None   # '' if cut short
    own = named and osp.join(work_dir, osp.basename(named))
    if named and osp.isfile(own) and \
            osp.abspath(own) != osp.abspath(named):
        # a work dir moved or copied: last_checkpoint names the old place
        print_log(f'{last_file} names {named}; resuming from {own}, this '
                  f'work dir\'s checkpoint of that name (a moved or copied '
                  f'work dir).', logger='current', level=logging.WARNING)
        named = own
    broken = [] if named else [(last_file, 'it names no checkpoint')]
    # checkpoints are in last_checkpoint's directory (out_dir) or work_dir
    candidates = ([named] if named else []) + _fallbacks(
        [osp.dirname(named) if named else work_dir, work_dir], named)
    for path in dict.fromkeys(candidates):   # each path once
        problem = checkpoint_problem(path)
        if problem is None:
            if broken:
                print_log(
                    f'Cannot resume from {broken[0][0]} ({broken[0][1]}); '
                    f'resuming from {path}, the newest whole checkpoint, '
                    f'instead: the steps after it are trained again.',
                    logger='current', level=logging.WARNING)
            return path
        broken.append((path, problem))
    listing = '; '.join(f'{path}: {problem}' for path, problem in broken)
    raise RuntimeError(
        f'No usable checkpoint to resume from in {work_dir} ({listing}). '
        f'Train again without --resume, or give --resume PATH a whole '
        f'checkpoint.')
