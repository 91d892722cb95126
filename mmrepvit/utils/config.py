# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
"""Configs as the tools read them: the one config loader, the flags that
``tools/train.py`` and ``tools/test.py`` share, and the config rewrites
they make (resumable training, test-time augmentation)."""
import copy
import os
import os.path as osp
import warnings
from typing import Optional

import torch
from mmengine.config import Config, ConfigDict, DictAction

from .checks import check_neck_widths, leaf_datasets, warn_ineffective_options
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


def make_resumable(cfg) -> None:
    """Use :class:`AtomicCheckpointHook` for the config's checkpoint hook
    (when it is MMEngine's plain ``CheckpointHook``) and add
    :class:`RandomStateHook`, in place."""
    hook = (cfg.get('default_hooks') or {}).get('checkpoint')
    if hook is not None and hook.get('type') in ('CheckpointHook',
                                                 'mmengine.CheckpointHook'):
        hook['type'] = 'AtomicCheckpointHook'
    custom = list(cfg.get('custom_hooks') or [])
    if not any(h.get('type') == 'RandomStateHook' for h in custom):
        custom.append(dict(type='RandomStateHook'))
    cfg.custom_hooks = custom


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


