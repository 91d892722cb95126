# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
"""What tools/train.py and tools/test.py share: their common flags, config
loading, the CPU (gloo) fallback for distributed runs on machines without
CUDA, and ending a distributed job cleanly; and what tools/test.py adds:
test-time augmentation (``--tta``) and drawing segmentation predictions
without the training set (``--show-dir``)."""
import copy
import logging
import os
import os.path as osp
import warnings

import torch
from mmengine.config import Config, ConfigDict, DictAction
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.registry import HOOKS

from .config_checks import (check_neck_widths, leaf_datasets,
                            warn_ineffective_options)


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


def refuse_unfit_checkpoint(runner, checkpoint: str,
                            whole: bool = True) -> None:
    """Make the runner's load of ``checkpoint`` (``load_from`` or the resumed
    checkpoint) raise ``ValueError`` where MMEngine would only warn and go on
    with weights the checkpoint did not provide, i.e. with random ones.

    ``whole=True`` (testing, resuming): every weight of the model must come
    from the checkpoint, in the model's shape. ``whole=False`` (``load_from``
    to fine-tune from, where a head may be left out on purpose): at least one
    weight must. The check runs on each rank, as part of the load (a fused
    checkpoint has switched the backbone to its deploy form by then), and
    only once.
    """
    from .deploy import _unwrap
    model = _unwrap(runner.model)   # where MMEngine's load_state_dict loads
    seen = {}

    def keep_lists(module, state_dict, prefix, local_metadata, strict,
                   missing, unexpected, error_msgs):
        seen.update(missing=missing, unexpected=unexpected,
                    errors=error_msgs)

    def check(module, incompatible):
        for handle in handles:
            handle.remove()
        problem = _unfit(module, seen, whole)
        if problem:
            raise ValueError(f'The checkpoint {checkpoint!r} does not fit '
                             f'the model of this config: {problem}')
    handles = [model.register_load_state_dict_pre_hook(keep_lists),
               model.register_load_state_dict_post_hook(check)]


def _unfit(model, seen: dict, whole: bool):
    """What ``refuse_unfit_checkpoint`` reports, or None."""
    weights = [k for k in model.state_dict()
               if not k.endswith('num_batches_tracked')]
    missing = [k for k in seen['missing']
               if not k.endswith('num_batches_tracked')]
    # PyTorch: 'size mismatch for KEY: copying a param with shape ...'
    shapes = [e.split('size mismatch for ', 1)[1] for e in seen['errors']
              if 'size mismatch for ' in e]
    unfit = len(missing) + len(shapes)
    if not unfit or (not whole and unfit < len(weights)):
        return None
    what = []
    if missing:
        what.append(f'{len(missing)} not in the checkpoint (e.g. '
                    f'{", ".join(missing[:3])})')
    if shapes:
        what.append(f'{len(shapes)} of another shape (e.g. '
                    f'{shapes[0].rstrip(".")})')
    unexpected = seen['unexpected']
    extra = (f'; the checkpoint holds {len(unexpected)} tensors the model '
             f'does not have (e.g. {", ".join(unexpected[:3])})'
             if unexpected else '')
    if whole:
        fix = ('Test (or resume) with a checkpoint of this config\'s model '
               '(same model type, arch and number of classes); a RepViT '
               'backbone checkpoint goes in model.backbone.init_cfg, for '
               'training.')
    else:
        fix = ('load_from starts training from a checkpoint of the same '
               'model type; a RepViT backbone checkpoint goes in '
               'model.backbone.init_cfg=dict(type=\'Pretrained\', '
               'checkpoint=...) instead (with prefix=\'backbone.\' to take '
               'the backbone of a whole-model checkpoint).')
    return (f'{unfit} of its {len(weights)} weights would keep their random '
            f'initial values: {"; ".join(what)}{extra}. {fix}')


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


# ------------------------------------------------------- tools/test.py --tta
# What MMDetection's tools/test.py uses where a config has no TTA settings
# (its base configs have none): horizontal flip on and off, boxes merged by
# NMS.
DET_TTA_MODEL = dict(
    type='DetTTAModel',
    tta_cfg=dict(nms=dict(type='nms', iou_threshold=0.5), max_per_img=100))
DET_TTA_META_KEYS = ('img_id', 'img_path', 'ori_shape', 'img_shape',
                     'scale_factor', 'flip', 'flip_direction')


def _find_key(node, key: str, path: str):
    """The dotted path of the first non-empty ``key`` in a nested config,
    or None."""
    if isinstance(node, dict):
        if node.get(key):
            return f'{path}.{key}'
        items = node.items()
    elif isinstance(node, (list, tuple)):
        items = enumerate(node)
    else:
        return None
    for name, value in items:
        found = _find_key(value, key, f'{path}.{name}')
        if found:
            return found
    return None


def _default_det_tta_pipeline(test_pipeline: list) -> list:
    """MMDetection's default: the test pipeline with its last transform
    (``PackDetInputs``) replaced by a flip and no flip, each packed with the
    flip in the meta keys (``DetTTAModel`` flips the boxes back)."""
    pipeline = copy.deepcopy(list(test_pipeline))
    pipeline[-1] = dict(
        type='TestTimeAug',
        transforms=[[dict(type='RandomFlip', prob=1.),
                     dict(type='RandomFlip', prob=0.)],
                    [dict(type='PackDetInputs', meta_keys=DET_TTA_META_KEYS)]])
    return pipeline


def use_tta(cfg: Config) -> Config:
    """Rewrite ``cfg`` in place for test-time augmentation, as the
    ``--tta`` of MMDetection's and MMSegmentation's ``tools/test.py`` does:
    the test set reads ``cfg.tta_pipeline`` and the model becomes
    ``cfg.tta_model`` holding the config's model as ``module``. Returns
    ``cfg``.

    MMSegmentation configs take both from their bases (``SegTTAModel`` from
    ``default_runtime.py``, a multi-scale + flip pipeline from the dataset
    bases); one without them raises, naming the missing key. MMDetection's
    bases define neither, so, as MMDetection does, a detection config
    without them gets defaults, with a warning: ``DetTTAModel`` (NMS IoU 0.5,
    100 boxes per image) and the test pipeline with a horizontal flip.
    """
    # the datasets that hold a pipeline, inside wrappers and concatenations
    datasets = [d for _, d in leaf_datasets(cfg.test_dataloader.dataset,
                                            'test_dataloader.dataset')]
    if cfg.default_scope == 'mmdet':
        mask_head = _find_key(cfg.model, 'mask_head', 'model')
        if mask_head and cfg.get('tta_model', DET_TTA_MODEL).get(
                'type') == 'DetTTAModel':
            raise ValueError(
                f'--tta: MMDetection\'s DetTTAModel merges boxes only; it '
                f'does not support instance segmentation, and this model '
                f'predicts masks ({mask_head}). Test it without --tta.')
        if 'tta_model' not in cfg:
            warnings.warn('--tta: the config has no tta_model; using '
                          'MMDetection\'s default, DetTTAModel with NMS IoU '
                          '0.5 and max_per_img 100.')
            cfg.tta_model = copy.deepcopy(DET_TTA_MODEL)
        if 'tta_pipeline' not in cfg:
            warnings.warn('--tta: the config has no tta_pipeline; using '
                          'MMDetection\'s default, the test pipeline with a '
                          'horizontal flip.')
            cfg.tta_pipeline = _default_det_tta_pipeline(
                datasets[0]['pipeline'])
    else:
        for key, example in [
                ('tta_model', "tta_model = dict(type='SegTTAModel') (from "
                 "mmseg::_base_/default_runtime.py)"),
                ('tta_pipeline', 'tta_pipeline = [...] (the MMSegmentation '
                 'dataset bases, e.g. mmseg::_base_/datasets/ade20k.py, '
                 'define one)')]:
            if key not in cfg:
                raise ValueError(f'--tta needs {key} in the config, which '
                                 f'has none; add {example}.')
    for dataset in datasets:
        dataset['pipeline'] = copy.deepcopy(cfg.tta_pipeline)
    cfg.model = ConfigDict(dict(cfg.tta_model, module=cfg.model))
    return cfg


# -------------------------------------------------- tools/test.py --show-dir
@HOOKS.register_module()
class SegTestVisualizationHook(Hook):
    """MMSegmentation's ``SegVisualizationHook`` for testing, without the
    training set: what ``tools/test.py --show/--show-dir`` uses for
    MMSegmentation configs.

    It draws every ``interval``-th test image (counting the images itself),
    with the same arguments, names and files as mmseg's hook. mmseg 1.2's
    hook passes ``runner.iter`` as the step, and reading ``runner.iter``
    builds the train loop, hence the training dataloader: a test run failed
    with FileNotFoundError where the training images are not there. Here the
    step is 0, which ``runner.iter`` is in a test-only run.

    Args:
        draw (bool): Whether to draw. Defaults to ``False``.
        interval (int): Draw every ``interval``-th image. Defaults to ``50``.
        show (bool): Show each drawn image in a window (and store nothing).
            Defaults to ``False``.
        wait_time (float): Seconds each image is shown. Defaults to ``0.``.
        backend_args (dict, optional): Arguments of the file backend that
            reads the images. Defaults to ``None``.
    """

    def __init__(self, draw=False, interval=50, show=False, wait_time=0.,
                 backend_args=None):
        from mmengine.visualization import Visualizer
        if interval < 1:
            raise ValueError(f'interval must be >= 1, got {interval}.')
        self._visualizer = Visualizer.get_current_instance()
        self.draw = draw
        self.interval = interval
        self.show = show
        self.wait_time = wait_time
        self.backend_args = backend_args
        self._count = 0
        if show:   # shown only, as mmseg's hook does: nothing is stored
            self._visualizer._vis_backends = {}

    def before_test(self, runner) -> None:
        self._count = 0

    def after_test_iter(self, runner, batch_idx, data_batch=None,
                        outputs=None) -> None:
        if not self.draw:
            return
        import mmcv
        from mmengine.fileio import get
        for sample in outputs:
            self._count += 1
            if self._count % self.interval:
                continue
            image = mmcv.imfrombytes(
                get(sample.img_path, backend_args=self.backend_args),
                channel_order='rgb')
            self._visualizer.add_datasample(
                f'test_{osp.basename(sample.img_path)}', image,
                data_sample=sample, show=self.show,
                wait_time=self.wait_time, step=0)
