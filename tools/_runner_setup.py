# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
"""What tools/train.py and tools/test.py share: config loading and the CPU
(gloo) fallback for distributed runs on machines without CUDA."""
import logging
import os
import os.path as osp

import torch
from mmengine.config import Config, DictAction
from mmengine.logging import print_log

import mmrepvit  # noqa: F401  (registers RepViT; safe MMEngine checkpoints)


def add_common_args(parser):
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override settings in the config, xxx=yyy format, e.g. '
        'train_dataloader.batch_size=4 model.backbone.with_cp=True')
    parser.add_argument('--launcher',
                        choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    # torchrun sets LOCAL_RANK; torch.distributed.launch passes --local_rank.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def load_config(args) -> Config:
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    if not osp.isfile(args.config):
        raise FileNotFoundError(f'Config file {args.config!r} does not exist.')
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    if cfg.get('default_scope') not in ('mmdet', 'mmseg'):
        raise ValueError(
            f"{args.config}: default_scope is {cfg.get('default_scope')!r}; "
            f"these tools run MMDetection ('mmdet') and MMSegmentation "
            f"('mmseg') configs.")
    if args.launcher != 'none' and not torch.cuda.is_available():
        _use_cpu_distributed(cfg)
    return cfg


def release_distributed():
    """Destroy this process's process group, if any, before the interpreter
    exits. Left alive, gloo's threads can abort the process at shutdown
    ('terminate called without an active exception') after the job is done.
    """
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _use_cpu_distributed(cfg: Config):
    """Run distributed jobs on CPU processes with the gloo backend.

    MMEngine's pytorch launcher calls torch.cuda.set_device and wraps the
    model with device_ids=[LOCAL_RANK]; neither works without CUDA. The process
    group is created here (so the Runner does not create it) and DDP gets
    device_ids=None, as PyTorch requires for CPU modules.
    """
    import torch.distributed as dist
    cfg.env_cfg = cfg.get('env_cfg', {})
    cfg.env_cfg.setdefault('dist_cfg', {})['backend'] = 'gloo'
    if cfg.launcher == 'pytorch' and not dist.is_initialized():
        dist.init_process_group(backend='gloo')
    wrapper = cfg.get('model_wrapper_cfg') or dict(
        type='MMDistributedDataParallel', broadcast_buffers=False,
        find_unused_parameters=cfg.get('find_unused_parameters', False))
    wrapper['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper
    # PyTorch's SyncBatchNorm synchronises only CUDA tensors and raises on CPU
    # tensors in a process group, so CPU processes use per-process BN.
    if replace_syncbn(cfg.model):
        print_log('No CUDA: SyncBN layers run as BN in each CPU process.',
                  logger='current', level=logging.WARNING)


def replace_syncbn(node) -> bool:
    """Turn every ``type='SyncBN'`` in a (nested) model config into 'BN', in
    place; returns whether there was one."""
    found = False
    if isinstance(node, dict):
        if node.get('type') == 'SyncBN':
            node['type'] = 'BN'
            found = True
        for value in node.values():
            found |= replace_syncbn(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            found |= replace_syncbn(value)
    return found
