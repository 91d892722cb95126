# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
"""Checks of a config before a run (neck widths, data paths, ``load_from``)
that name the setting to change."""
import difflib
import inspect
import os
import os.path as osp
import zipfile
from typing import Iterator, List, Optional, Sequence, Tuple


def _backbone_widths(backbone: dict) -> Tuple[List[int], str]:
    """Output widths of a ``RepViT`` config, and the settings deciding them."""
    import torch

    from ..models import RepViT
    args = {k: v for k, v in backbone.items() if k not in ('type', 'init_cfg')}
    known = list(inspect.signature(RepViT).parameters)
    unknown = [k for k in args if k not in known]
    if unknown:   # else a TypeError of __init__, naming no fix
        close = [c for k in unknown
                 for c in difflib.get_close_matches(k, known, n=1)]
        raise ValueError(
            f'model.backbone has no argument {", ".join(unknown)}: RepViT '
            f'takes {", ".join(known)}.'
            + (f' Did you mean {", ".join(close)}?' if close else ''))
    with torch.device('meta'):   # its shapes only, no memory
        model = RepViT(**args)
    settings = (f"arch {model.arch_name!r}, out_indices "
                f"{tuple(model.out_indices)}, stage_ends {model.stage_ends!r}")
    return model.out_channels, settings


def _consumers(model: dict) -> Iterator[Tuple[str, dict]]:
    """``(dotted path, config)`` of the (first) neck, or else of the heads."""
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
    """Raise if the neck or heads expect other widths than a RepViT gives.

    Args:
        model (dict): A model config (``cfg.model``).

    Raises:
        ValueError: A neck's ``in_channels`` list, or a neckless head's for
            its ``in_index``, differs, or ``in_index`` selects no output.
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


def leaf_datasets(dataset: dict, where: str) -> Iterator[Tuple[str, dict]]:
    """``(dotted path, config)`` of each dataset inside wrappers."""
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


def _dataset_problems(where: str, dataset: dict, scope: str) -> Iterator[str]:
    root = dataset.get('data_root') or ''
    if dataset.get('backend_args') or _is_remote(root):
        return     # another storage backend
    if root and not osp.isdir(root):
        fix = (f'Put the data there or point the config at it, e.g. '
               f'--cfg-options {where}.data_root=/path/to/data.')
        if osp.basename(osp.normpath(root)) in ('demo_ade', 'demo_coco'):
            fix += (' The demo data are written by tools/demo.py or '
                    'tools/dataset_converters/make_demo_'
                    f"{'ade' if 'ade' in root else 'coco'}.py.")
        yield _missing(root, 'data_root', where, fix)
        return

    def joined(path):
        return path if osp.isabs(path) or not root else osp.join(root, path)

    ann_file = dataset.get('ann_file') or ''
    if ann_file and not _is_remote(ann_file) and \
            not osp.exists(joined(ann_file)):
        yield _missing(joined(ann_file), 'ann_file', where,
                       f'Check {where}.ann_file and data_root.')
    prefixes = dataset.get('data_prefix') or {}
    for key, prefix in prefixes.items():
        if prefix and not _is_remote(prefix) and not osp.isdir(joined(prefix)):
            yield _missing(joined(prefix), f'data_prefix.{key} directory',
                           where, f'Check {where}.data_prefix and data_root.')
            return
    # Without ann_file, MMSegmentation lists img_path: empty, it fails oddly.
    images = prefixes.get('img_path')
    if ann_file or not images or _is_remote(images):
        return
    suffix = _image_suffix(dataset, scope)
    if suffix and not any(name.endswith(suffix) for _, _, files
                          in os.walk(joined(images)) for name in files):
        yield (f'{where}: no {suffix!r} file in {joined(images)!r}, so the '
               f'dataset would be empty. Check data_root, '
               f'data_prefix.img_path and img_suffix.')


def _evaluator_problems(where: str, evaluator) -> Iterator[str]:
    metrics = evaluator if isinstance(evaluator, (list, tuple)) else \
        evaluator.get('metrics', [evaluator])
    for metric in metrics if isinstance(metrics, (list, tuple)) else [metrics]:
        ann_file = metric.get('ann_file') if isinstance(metric, dict) else None
        if ann_file and not _is_remote(ann_file) and not osp.isfile(ann_file):
            yield _missing(ann_file, 'ann_file', where,
                           f'Set {where}.ann_file to the annotation file.')


def check_data_paths(cfg, loaders: Sequence[str]) -> None:
    """Raise FileNotFoundError if local data ``loaders`` read are missing."""
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


def checkpoint_problem(path: str, full: bool = True) -> Optional[str]:
    """Why ``path`` is not a whole checkpoint file, unpickling nothing.

    Args:
        path (str): A local file.
        full (bool): Check each zip member's CRC-32 (reading the whole
            file), else only the central directory. Defaults to ``True``.

    Returns:
        str | None: The problem, in words, or None (a pre-zip pickle passes).
    """
    if osp.isdir(path):
        return 'it is a directory, not a checkpoint file in it'
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
    return None if bad is None else \
        f'its member {bad!r} is corrupted (CRC mismatch)'


def check_load_from(cfg) -> None:
    """Raise if ``cfg.load_from`` is a local path but no whole checkpoint."""
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
    """Run the checks ``tools/train.py`` and ``tools/test.py`` run."""
    check_neck_widths(cfg.model)
    check_load_from(cfg)
    check_data_paths(cfg, loaders)
