# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
"""Config loading and the flags the tools share; ``--cfg-options`` that
would change nothing are warned about."""
import argparse
import contextlib
import difflib
import inspect
import logging
import os
import os.path as osp
from typing import Iterator, List, Optional

import torch
from mmengine.config import Config, DictAction
from mmengine.logging import print_log

from .compat import use_cpu_distributed

# Top-level keys read besides Runner.__init__'s arguments (tta_*: test.py
# --tta); any other is a variable of the config file, used only in parsing.
_READ_BY_RUNNER = {
    'custom_imports', 'runner_type', 'model_wrapper_cfg', 'sync_bn',
    'find_unused_parameters', 'activation_checkpointing',
    'efficient_conv_bn_eval', 'compile', 'tta_model', 'tta_pipeline'
}


def _missing_config(config: str) -> Optional[str]:
    """Why the config ``config`` (a file, or ``mmdet::`` / ``mmseg::`` and a
    path in that package's configs) cannot be read; None if it can."""
    package, _, path = config.rpartition('::')
    if package not in ('', 'mmdet', 'mmseg'):
        return (f'Config {config!r} names the package {package!r}; '
                f'pkg::path configs come from mmdet or mmseg, e.g. '
                f'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py.')
    if package:   # where MMEngine's get_config looks
        from mmengine.utils import get_installed_path
        path = osp.join(get_installed_path(package), '.mim', 'configs', path)
    if not osp.isfile(path):
        return (f'Config file {config!r} does not exist (looked for '
                f'{osp.abspath(path)!r}).')
    return None


def load_config(config: str, cfg_options: Optional[dict] = None) -> Config:
    """Load a config file or ``pkg::path``, merging in ``cfg_options``."""
    missing = _missing_config(config)
    if missing:
        raise FileNotFoundError(missing)
    if '::' in config:
        from mmengine.hub import get_config
        cfg = get_config(config)
    else:
        cfg = Config.fromfile(config)
    if cfg_options:
        warn_ineffective_options(cfg, cfg_options)
        cfg.merge_from_dict(cfg_options)
    if cfg.get('default_scope') not in ('mmdet', 'mmseg'):
        raise ValueError(
            f"{config}: default_scope is {cfg.get('default_scope')!r}; "
            f"these tools run 'mmdet' and 'mmseg' configs only.")
    return cfg


def checked(kind, ok, what):
    """An argparse type: ``kind(text)`` if ``ok`` of it, else an error."""
    def parse(text):
        with contextlib.suppress(ValueError):
            if ok(value := kind(text)):
                return value
        raise argparse.ArgumentTypeError(f'expected {what}, got {text!r}')
    return parse


#: An argparse type for input sizes (H, W): positive integers.
positive_size = checked(int, lambda v: v >= 1, 'a positive size')


def config_file(text: str) -> str:
    """An argparse type for CONFIG: a config that exists."""
    missing = _missing_config(text)
    if missing:
        raise argparse.ArgumentTypeError(missing)
    return text


def config_only(text: str) -> str:
    """:func:`config_file` that also refuses a checkpoint file."""
    if text.endswith(('.pth', '.pt', '.safetensors', '.onnx')):
        raise argparse.ArgumentTypeError(
            f'{text!r} is a checkpoint, not a config: this tool takes '
            f'configs only (it measures seeded random weights)')
    return config_file(text)


def check_output(parser, out: str, *inputs: str) -> None:
    """Refuse (exit status 2) an output path that is a directory, or one of
    the tool's ``inputs``, which writing it would destroy."""
    if osp.isdir(out):
        parser.error(f'{out!r} is a directory; give the path of the file to '
                     f'write in it')
    for given in inputs:
        if osp.isfile(given) and osp.exists(out) and osp.samefile(given, out):
            parser.error(f'{out!r} is the input {given!r}, which writing it '
                         f'would destroy; give another output path')


class ConfigOptionsAction(DictAction):
    """``DictAction`` whose malformed pairs are usage errors."""

    def __call__(self, parser, namespace, values, option_string=None):
        for pair in values or ():
            if '=' not in pair:
                parser.error(f'{option_string} expects KEY=VALUE pairs, got '
                             f'{pair!r}')
        try:
            super().__call__(parser, namespace, values, option_string)
        except AssertionError as e:   # DictAction asserts balanced brackets
            parser.error(f'{option_string}: {e}')


def add_common_args(parser):
    """Add the flags ``tools/train.py`` and ``tools/test.py`` share."""
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument('--cfg-options', nargs='+', action=ConfigOptionsAction,
                        help='override settings in the config, KEY=VALUE '
                        'pairs, e.g. train_dataloader.batch_size=4 '
                        'model.backbone.with_cp=True')
    parser.add_argument('--launcher', default='none', help='job launcher',
                        choices=['none', 'pytorch', 'slurm', 'mpi'])
    # torchrun sets LOCAL_RANK; torch.distributed.launch passes --local_rank.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def parse_tool_args(parser, argv=None):
    """Parse ``argv`` with the shared flags: ``(args, config)``."""
    add_common_args(parser)
    args = parser.parse_args(argv)
    return args, tool_config(args)


def tool_config(args) -> Config:
    """The config with the shared flags applied (gloo where no CUDA)."""
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    cfg = load_config(args.config, args.cfg_options)
    cfg.launcher = args.launcher
    if args.work_dir is not None or cfg.get('work_dir') is None:
        cfg.work_dir = args.work_dir or osp.join(
            './work_dirs', osp.splitext(osp.basename(args.config))[0])
    if args.launcher != 'none':
        cfg.custom_hooks = list(cfg.get('custom_hooks') or []) + [
            dict(type='DistributedJobHook')]
        if not torch.cuda.is_available():
            use_cpu_distributed(cfg)
    return cfg


def _find(cfg, parts: List[str]):
    """Follow ``parts`` into ``cfg``: (deepest node, parts found)."""
    node = cfg
    for depth, part in enumerate(parts):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, (list, tuple)) and part.isdigit() and \
                int(part) < len(node):
            node = node[int(part)]
        else:
            return node, depth
    return node, len(parts)


def _paths(node, prefix: str = '') -> Iterator[str]:
    """Every dotted key path in a config (list items by index)."""
    items = node.items() if isinstance(node, dict) else \
        enumerate(node) if isinstance(node, (list, tuple)) else ()
    for key, value in items:
        path = f'{prefix}{key}'
        yield path
        yield from _paths(value, path + '.')


def warn_ineffective_options(cfg, options: dict) -> List[str]:
    """Warn about, and return, ``--cfg-options`` keys that change nothing:
    typos, new top-level keys nothing reads, the file's variables."""
    from mmengine.runner import Runner
    runner_keys = _READ_BY_RUNNER | (
        set(inspect.signature(Runner.__init__).parameters) - {'self'})
    cfg = cfg.to_dict() if hasattr(cfg, 'to_dict') else cfg
    warnings = []
    for key in options:
        parts = key.split('.')
        node, found = _find(cfg, parts)
        if found < len(parts):
            name = parts[found]
            siblings = [str(k) for k in node] if isinstance(node, dict) else []
            close = difflib.get_close_matches(name, siblings, n=3, cutoff=0.75)
            similar = ', '.join('.'.join(parts[:found] + [c]) for c in close)
            if found == 0 and name not in runner_keys:
                warnings.append(
                    f'--cfg-options {key}: the config has no top-level key '
                    f'{name!r} and nothing reads a new one, so this changes '
                    f'nothing.' + (f' Did you mean {similar}?' if close
                                   else ''))
            elif close:
                warnings.append(
                    f'--cfg-options {key}: the config has no key {key!r}; '
                    f'it is added as a new setting. Did you mean {similar}?')
        elif len(parts) == 1 and key not in runner_keys:
            uses = [p for p in _paths(cfg) if p.endswith('.' + key)]
            warnings.append(
                f'--cfg-options {key}: {key!r} is a variable of the config '
                f'file, read only while the file was parsed, so changing it '
                f'now changes nothing. Set the settings that use it instead' +
                (f', e.g. {", ".join(uses[:4])}.' if uses else '.'))
    for message in warnings:
        print_log(message, logger='current', level=logging.WARNING)
    return warnings
