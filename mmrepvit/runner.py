# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
"""What tools/train.py and tools/test.py share: their common flags, config
loading, the CPU (gloo) fallback for distributed runs on machines without
CUDA, and ending a distributed job cleanly."""
import logging
import os
import os.path as osp

import torch
from mmengine.config import Config, DictAction
from mmengine.logging import print_log

from .config_checks import check_neck_widths, warn_ineffective_options


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
        warn_ineffective_options(cfg, args.cfg_options)
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
    check_neck_widths(cfg.model)
    if args.launcher != 'none' and not torch.cuda.is_available():
        _use_cpu_distributed(cfg)
    return cfg


def run_job(job) -> None:
    """Run ``job`` (``runner.train`` or ``runner.test``) and end the process
    as a distributed job must.

    Without a process group, or with NCCL, this is just ``job()``. With a
    gloo process group (CPU processes), a job that finished ends the process
    here, with status 0, after all ranks met at a barrier, the process group
    was destroyed, the ``atexit`` handlers ran and the output was flushed,
    but without the interpreter's finalisation. An exception raised by the
    job propagates unchanged, so a rank that really fails still fails the
    job with a non-zero status.

    Why: each of gloo's worker threads destroys the work it finished right
    after marking it complete, and the last reference to a collective's
    tensor that Python created drops there; freeing it needs the GIL. When
    that happens after the main thread started finalising the interpreter,
    Python (3.11+) ends the thread with ``pthread_exit``, whose unwinding
    meets a ``noexcept`` destructor: ``std::terminate`` ("terminate called
    without an active exception"), SIGABRT, after the job did all its work.
    ``destroy_process_group`` does not stop gloo's threads (the process group
    stays referenced from C++ by DDP and PyTorch's registries), so the only
    way not to race them is not to finalise while they exist.
    """
    import atexit
    import sys

    import torch.distributed as dist
    job()
    if not (dist.is_available() and dist.is_initialized()) or \
            dist.get_backend() != 'gloo':
        return
    dist.barrier()   # nothing left in flight between ranks
    dist.destroy_process_group()
    atexit._run_exitfuncs()   # what finalisation would run: logging, ...
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def write_test_metrics_on_rank0_only(runner) -> None:
    """MMEngine 0.10.7's LoggerHook writes the test metrics JSON on every
    rank, all to the same file (the timestamp is shared), so concurrent
    writes of different lengths can leave it corrupt ('Extra data'). Other
    ranks keep logging the line but no longer write the file."""
    from mmengine.dist import is_main_process
    from mmengine.hooks import LoggerHook
    if is_main_process():
        return
    for hook in runner.hooks:
        if isinstance(hook, LoggerHook):
            def log_only(runner, metrics=None):
                _, line = runner.log_processor.get_log_after_epoch(
                    runner, len(runner.test_dataloader), 'test',
                    with_non_scalar=True)
                runner.logger.info(line)
            hook.after_test_epoch = log_only


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
