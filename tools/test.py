#!/usr/bin/env python
# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
"""Test (evaluate) a checkpoint of an MMDetection or MMSegmentation config (the
config's default_scope decides which); the flags are MMDetection's.

    python tools/test.py configs/det/repvit_m1_1_maskrcnn.py \\
        repvit_m1_1_coco.pth
    python tools/test.py CONFIG CKPT --show-dir vis --out results.pkl
    python tools/test.py CONFIG CKPT --fuse --channels-last   # deploy form
    python tools/test.py CONFIG CKPT --tta    # test-time augmentation
"""
import argparse
import copy
import warnings

from mmengine.config import Config, ConfigDict
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from mmrepvit.utils.checks import check_config, leaf_datasets
from mmrepvit.utils.config import config_file, parse_tool_args


def build_parser():
    parser = argparse.ArgumentParser(description='Test (and evaluate) a '
                                     'detector or a segmentor')
    parser.add_argument('config', type=config_file,
                        help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--out', help='detection: dump predictions to this .pkl file; '
        'segmentation: write predicted label maps (PNG) to this directory')
    parser.add_argument('--show', action='store_true',
                        help='show predictions in a window')
    parser.add_argument(
        '--show-dir', help='save images with predictions drawn to this '
        'directory; a relative path is, as in each library\'s own test.py, '
        'relative to WORK_DIR/TIMESTAMP/ for detection (the images go in '
        'SHOW_DIR/) and to the current directory for segmentation (the '
        'images go in SHOW_DIR/vis_data/vis_image/)')
    parser.add_argument('--wait-time', type=float, default=2,
                        help='seconds each image is shown with --show')
    parser.add_argument('--fuse', action='store_true',
                        help='fuse (re-parameterise) every RepViT before '
                        'testing; fused checkpoints need no flag')
    parser.add_argument('--channels-last', action='store_true',
                        help='fuse, and run backbone and neck in the '
                        'channels_last memory format')
    parser.add_argument(
        '--tta', action='store_true',
        help='test-time augmentation: test with the config\'s tta_pipeline '
        'and tta_model (detection configs without them get MMDetection\'s '
        'defaults: a horizontal flip, merged by DetTTAModel)')
    return parser


def enable_visualization(cfg, args):
    hook = cfg.default_hooks.get('visualization')
    if hook is None:
        raise RuntimeError('--show/--show-dir need a "visualization" entry '
                           'in default_hooks.')
    hook['draw'] = True
    hook['interval'] = 1
    if hook.get('type') in ('SegVisualizationHook',
                            'mmseg.SegVisualizationHook'):
        # mmseg's hook reads runner.iter, which builds the training
        # dataloader: testing would need the training set.
        hook['type'] = 'SegTestVisualizationHook'
    if args.show:
        hook['show'] = True
        hook['wait_time'] = args.wait_time
    if args.show_dir:
        if cfg.default_scope == 'mmdet':
            hook['test_out_dir'] = args.show_dir
        else:
            cfg.visualizer['save_dir'] = args.show_dir


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
        given = cfg.get('tta_model') or {}
        if 'type' not in given:
            # settings without a type (--cfg-options tta_model.tta_cfg...)
            # change MMDetection's default
            warnings.warn(
                '--tta: the config has no tta_model' + (
                    ' type; its settings change' if given else '; using') +
                ' MMDetection\'s default, DetTTAModel with NMS IoU 0.5 and '
                'max_per_img 100.')
            default = Config(dict(tta_model=copy.deepcopy(DET_TTA_MODEL)))
            default.merge_from_dict(dict(tta_model=given))
            cfg.tta_model = default.tta_model
        mask_head = _find_key(cfg.model, 'mask_head', 'model')
        if mask_head and cfg.tta_model.get('type') == 'DetTTAModel':
            raise ValueError(
                f'--tta: MMDetection\'s DetTTAModel merges boxes only; it '
                f'does not support instance segmentation, and this model '
                f'predicts masks ({mask_head}). Test it without --tta.')
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


def main():
    args, cfg = parse_tool_args(build_parser())
    pickle = bool(args.out) and args.out.endswith(('.pkl', '.pickle'))
    if args.out and cfg.default_scope == 'mmdet' and not pickle:
        raise ValueError(f'--out for detection must be a .pkl file, not '
                         f'{args.out!r}.')
    if pickle and cfg.default_scope == 'mmseg':
        raise ValueError(f'--out for segmentation is the directory to write '
                         f'the predicted label maps (PNG) to, not a .pkl '
                         f'file ({args.out!r}), as in MMSegmentation.')
    cfg.load_from = args.checkpoint
    check_config(cfg, ['test_dataloader'])
    if args.show or args.show_dir:
        enable_visualization(cfg, args)
    if args.tta:
        use_tta(cfg)

    # refuse a checkpoint that leaves weights random (when the run loads it)
    hooks = [dict(type='RefuseUnfitCheckpointHook',
                  checkpoint=args.checkpoint)]
    if args.fuse or args.channels_last:
        hooks.append(dict(type='FuseModelHook',
                          channels_last=args.channels_last))
    cfg.custom_hooks = list(cfg.get('custom_hooks') or []) + hooks

    if args.out and cfg.default_scope == 'mmseg':
        cfg.test_evaluator['output_dir'] = args.out
        cfg.test_evaluator['keep_results'] = True

    runner = (Runner.from_cfg(cfg) if 'runner_type' not in cfg else
              RUNNERS.build(cfg))

    if args.out and cfg.default_scope == 'mmdet':
        from mmdet.evaluation import DumpDetResults
        runner.test_evaluator.metrics.append(
            DumpDetResults(out_file_path=args.out))
    runner.test()


if __name__ == '__main__':
    main()
