# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
"""Checks of a config before a run starts, so that a mistake is reported at
once, with the setting to change, instead of as a traceback from deep inside
a dataloader, a convolution or a loop minutes later:

- :func:`check_neck_widths`: the neck (or, without one, the heads) expects
  the widths a ``RepViT`` backbone gives;
- :func:`check_data_paths`: the datasets' directories and annotation files,
  and the evaluators' annotation files, exist, and a dataset that lists a
  directory finds images there;
- :func:`check_load_from`: ``load_from`` is a whole checkpoint file
  (:func:`checkpoint_problem`, the one validator of checkpoint files, which
  :mod:`mmrepvit.utils.checkpoint` also asks).

``tools/train.py`` and ``tools/test.py`` call them (through
:func:`check_config`); a user who builds models another way can call
:func:`check_neck_widths` on ``cfg.model``.
"""
import inspect
import os
import os.path as osp
import zipfile
from typing import Iterator, List, Optional, Sequence, Tuple


# ------------------------------------------------------------- neck widths
def _backbone_widths(backbone: dict) -> Tuple[List[int], str]:
    """The widths of the outputs of a ``RepViT`` backbone config, and a
    description of the settings that decide them."""
    import torch

    from ..models import RepViT
    args = {k: v for k, v in backbone.items() if k not in ('type', 'init_cfg')}
    with torch.device('meta'):   # its shapes only, no memory
        model = RepViT(**args)
    settings = (f"arch {model.arch_name!r}, out_indices "
                f"{tuple(model.out_indices)}, stage_ends {model.stage_ends!r}")
    return model.out_channels, settings


def _consumers(model: dict) -> Iterator[Tuple[str, dict]]:
    """The parts of a model config that take the backbone's outputs, with
    their dotted paths: the neck (the first one of a list of necks) or,
    without one, the decode and auxiliary heads (MMSegmentation)."""
    neck = model.get('neck')
    if isinstance(neck, (list, tuple)):
        yield 'model.neck.0', neck[0]
    elif neck is not None:
        yield 'model.neck', neck
    else:
        for name in ('decode_head', 'auxiliary_head'):
            heads = model.get(name)
            if isinstance(heads, (list, tuple)):
                for i, head in enumerate(heads):
                    yield f'model.{name}.{i}', head
            elif heads is not None:
                yield f'model.{name}', heads


def check_neck_widths(model: dict) -> None:
    """Raise if the part of ``model`` (a model config) that takes the
    outputs of its ``RepViT`` backbone expects other widths.

    A neck's ``in_channels`` (a list) must equal the backbone's output
    widths; a head without a neck (MMSegmentation) must expect the widths of
    the outputs its ``in_index`` selects. Configs whose backbone is not
    RepViT pass unchecked.

    Args:
        model (dict): A model config (``cfg.model``).

    Raises:
        ValueError: the widths differ; the message gives the backbone's
            widths and the value to set.
    """
    backbone = model.get('backbone') or {}
    if backbone.get('type') not in ('RepViT', 'mmrepvit.RepViT'):
        return
    widths, settings = _backbone_widths(backbone)
    for where, part in _consumers(model):
        expected = part.get('in_channels')
        if isinstance(expected, tuple):
            expected = list(expected)
        if where.startswith('model.neck'):
            if not isinstance(expected, list):
                continue
            given = widths
        else:   # a head reading backbone outputs through in_index
            index = part.get('in_index', -1)
            try:
                given = ([widths[i] for i in index] if isinstance(
                    index, (list, tuple)) else widths[index])
            except IndexError:
                raise ValueError(
                    f'{where}.in_index={index} selects an output that the '
                    f'RepViT backbone ({settings}) does not give: it gives '
                    f'{len(widths)} outputs, of widths {widths}.') from None
        if expected != given:
            raise ValueError(
                f'{where}.in_channels is {expected}, but the RepViT backbone '
                f'({settings}) gives features of widths {widths}. Set '
                f'{where}.in_channels={given}, or choose the arch and '
                f'out_indices that {where} was written for.')


# ------------------------------------------------------------- data paths
def leaf_datasets(dataset: dict, where: str) -> Iterator[Tuple[str, dict]]:
    """Every leaf dataset config inside wrappers (``dataset=``) and
    concatenations (``datasets=[...]``)."""
    if 'dataset' in dataset:
        yield from leaf_datasets(dataset['dataset'], f'{where}.dataset')
    elif 'datasets' in dataset:
        for i, inner in enumerate(dataset['datasets']):
            yield from leaf_datasets(inner, f'{where}.datasets.{i}')
    else:
        yield where, dataset


def _is_remote(path: str) -> bool:
    return '://' in str(path)


def _missing(path: str, kind: str, where: str, hint: str) -> str:
    return (f'{where}: {kind} {path!r} does not exist (looked for '
            f'{osp.abspath(path)!r}). {hint}')


def _image_suffix(dataset: dict, scope: str):
    """``img_suffix`` of a dataset config, or its class's default."""
    if 'img_suffix' in dataset:
        return dataset['img_suffix']
    from mmengine.registry import DATASETS
    try:
        cls = DATASETS.get(f"{scope}.{dataset.get('type')}")
        default = inspect.signature(cls).parameters['img_suffix'].default
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    return default if isinstance(default, str) else None


def _has_file(directory: str, suffix: str) -> bool:
    for _, _, files in os.walk(directory):
        if any(name.endswith(suffix) for name in files):
            return True
    return False


def _dataset_problems(where: str, dataset: dict,
                      scope: str) -> Iterator[str]:
    if dataset.get('backend_args'):
        return     # files on another storage backend: not checked here
    root = dataset.get('data_root') or ''
    if _is_remote(root):
        return
    fix = (f'Put the data there or point the config at it, e.g. '
           f'--cfg-options {where}.data_root=/path/to/data.')
    if root and not osp.isdir(root):
        if osp.basename(osp.normpath(root)) in ('demo_ade', 'demo_coco'):
            fix += (' The demo data are written by tools/demo.py or '
                    'tools/dataset_converters/make_demo_'
                    f"{'ade' if 'ade' in root else 'coco'}.py.")
        yield _missing(root, 'data_root', where, fix)
        return

    def joined(path):
        return path if osp.isabs(path) or not root else osp.join(root, path)

    ann_file = dataset.get('ann_file') or ''
    if ann_file and not _is_remote(ann_file):
        path = joined(ann_file)
        if not osp.exists(path):
            yield _missing(path, 'ann_file', where,
                           f'Check {where}.ann_file and data_root.')
    for key, prefix in (dataset.get('data_prefix') or {}).items():
        if prefix and not _is_remote(prefix):
            path = joined(prefix)
            if not osp.isdir(path):
                yield _missing(path, f'data_prefix.{key} directory', where,
                               f'Check {where}.data_prefix and data_root.')
                return
    # A dataset without ann_file lists its image directory (MMSegmentation);
    # finding nothing there, it would fail building with an unrelated error.
    images = (dataset.get('data_prefix') or {}).get('img_path')
    suffix = _image_suffix(dataset, scope) if images and not ann_file \
        else None
    if suffix and not _is_remote(images) and \
            not _has_file(joined(images), suffix):
        yield (f'{where}: no {suffix!r} file in {joined(images)!r}, so the '
               f'dataset would be empty. Check data_root, '
               f'data_prefix.img_path and img_suffix.')


def _evaluator_problems(where: str, evaluator) -> Iterator[str]:
    metrics = evaluator if isinstance(evaluator, (list, tuple)) else \
        evaluator.get('metrics', [evaluator])
    metrics = metrics if isinstance(metrics, (list, tuple)) else [metrics]
    for metric in metrics:
        ann_file = metric.get('ann_file') if isinstance(metric, dict) else None
        if ann_file and not _is_remote(ann_file) and not osp.isfile(ann_file):
            yield _missing(ann_file, 'ann_file', where,
                           f'Set {where}.ann_file to the annotation file.')


def check_data_paths(cfg, loaders: Sequence[str]) -> None:
    """Raise if a directory or annotation file that the datasets of the
    given dataloaders (e.g. ``['train_dataloader', 'val_dataloader']``), or
    their evaluators, read does not exist.

    Raises:
        FileNotFoundError: naming the missing paths and the settings to fix.
    """
    problems = []
    for loader in loaders:
        if not cfg.get(loader) or not cfg[loader].get('dataset'):
            continue
        for where, dataset in leaf_datasets(cfg[loader]['dataset'],
                                            f'{loader}.dataset'):
            problems += _dataset_problems(where, dataset,
                                          cfg.get('default_scope'))
        evaluator = loader.replace('_dataloader', '_evaluator')
        if cfg.get(evaluator):
            problems += _evaluator_problems(evaluator, cfg[evaluator])
    if problems:
        raise FileNotFoundError('\n'.join(dict.fromkeys(problems)))


# ------------------------------------------------------- checkpoint files
def checkpoint_problem(path: str, full: bool = True) -> Optional[str]:
    """Why ``path`` is not a whole checkpoint file, or None if it is.

    Args:
        path (str): A local file.
        full (bool): Check every member of a zip archive (what
            ``torch.save`` writes) against its CRC-32, reading the whole
            file; otherwise only its central directory. Nothing is
            unpickled either way. An old-style pickle checkpoint is accepted
            as it is. Defaults to ``True``.

    Returns:
        str | None: The problem, in words, or None.
    """
    if not osp.isfile(path):
        return 'the file does not exist'
    if osp.getsize(path) == 0:
        return 'the file is empty'
    if not zipfile.is_zipfile(path):
        with open(path, 'rb') as f:
            if f.read(1) == b'\x80':    # a pre-zip pickle checkpoint
                return None
        return ('it is not a complete checkpoint archive (cut short, '
                'or not a checkpoint at all)')
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip() if full else None
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        return f'its archive is damaged ({e})'
    if bad is not None:
        return f'its member {bad!r} is corrupted (CRC mismatch)'
    return None


def check_load_from(cfg) -> None:
    """Raise if ``cfg.load_from`` (the checkpoint to test, to resume from or
    to start from) is a local path that is not a whole checkpoint file:
    missing, empty, cut short or corrupted.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not a whole checkpoint.
    """
    path = cfg.get('load_from')
    if not path or _is_remote(path):
        return
    problem = checkpoint_problem(path, full=False)   # torch.load reads it
    if problem is not None:
        error = ValueError if osp.exists(path) else FileNotFoundError
        raise error(f'Cannot load the checkpoint {path!r}: {problem} (looked '
                    f'for {osp.abspath(path)!r}). Check the path, or save or '
                    f'download the checkpoint again.')


def check_config(cfg, loaders: Sequence[str]) -> None:
    """What the tools check before a run: :func:`check_neck_widths`,
    :func:`check_load_from`, and :func:`check_data_paths` for ``loaders``.

    Args:
        cfg (Config): The config of the run.
        loaders (Sequence[str]): The dataloaders the run uses, e.g.
            ``['train_dataloader', 'val_dataloader']``.
    """
    check_neck_widths(cfg.model)
    check_load_from(cfg)
    check_data_paths(cfg, loaders)
