# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
"""Configs as the tools read them: the one config loader, and the flags
and settings that ``tools/train.py`` and ``tools/test.py`` share."""
import os
import os.path as osp
from typing import Optional

import torch
from mmengine.config import Config, DictAction

from .checks import check_neck_widths, warn_ineffective_options
from .compat import use_cpu_distributed


def load_config(config: str, cfg_options: Optional[dict] = None) -> Config:
    """Load an MMDetection or MMSegmentation config.

    Args:
        config (str): A file, or a package path such as
            ``mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py``.
        cfg_options (dict, optional): Settings merged in, as
            ``--cfg-options`` gives them, with a warning for each key that
            would change nothing. Defaults to ``None``.

    Returns:
        Config: The config.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: its ``default_scope`` is neither ``mmdet`` nor ``mmseg``.
    """
    if '::' in config:
        from mmengine.hub import get_config
        cfg = get_config(config)
    elif not osp.isfile(config):
        raise FileNotFoundError(f'Config file {config!r} does not exist.')
    else:
        cfg = Config.fromfile(config)
    if cfg_options:
        warn_ineffective_options(cfg, cfg_options)
        cfg.merge_from_dict(cfg_options)
    if cfg.get('default_scope') not in ('mmdet', 'mmseg'):
        raise ValueError(
            f"{config}: default_scope is {cfg.get('default_scope')!r}; "
            f"these tools run MMDetection ('mmdet') and MMSegmentation "
            f"('mmseg') configs.")
    return cfg


def add_common_args(parser):
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--cfg-options', nargs='+', action=ConfigOptionsAction,
        help='override settings in the config, xxx=yyy format, e.g. '
        'train_dataloader.batch_size=4 model.backbone.with_cp=True')
    parser.add_argument('--launcher',
                        choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    # torchrun sets LOCAL_RANK; torch.distributed.launch passes --local_rank.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


class ConfigOptionsAction(DictAction):
    """MMEngine's ``DictAction`` (``KEY=VALUE`` pairs into a dict) that
    reports a malformed pair as a usage error (exit status 2) instead of a
    traceback: ``--cfg-options model.backbone.arch m1_1`` (no ``=``) gives
    "--cfg-options expects KEY=VALUE pairs, got 'model.backbone.arch'"."""

    def __call__(self, parser, namespace, values, option_string=None):
        for pair in values or ():
            if '=' not in pair:
                parser.error(f'{option_string} expects KEY=VALUE pairs, got '
                             f'{pair!r}')
        try:
            super().__call__(parser, namespace, values, option_string)
        except AssertionError as e:   # DictAction asserts balanced brackets
            parser.error(f'{option_string}: {e}')


def tool_config(args) -> Config:
    """The config of ``tools/train.py`` / ``tools/test.py``: loaded with
    ``--cfg-options``, ``--work-dir`` and ``--launcher`` applied, the neck's
    input widths checked, and distributed runs moved to gloo on a machine
    without CUDA."""
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    cfg = load_config(args.config, args.cfg_options)
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    check_neck_widths(cfg.model)
    if args.launcher != 'none' and not torch.cuda.is_available():
        use_cpu_distributed(cfg)
    return cfg
