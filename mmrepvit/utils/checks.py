# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
"""Checks of a config before a run that name the setting to change."""
import difflib
import inspect
import os
import os.path as osp
import zipfile
from typing import Iterator, List, Optional, Sequence, Tuple


def _refuse_unknown(keys, known: List[str], has_no: str, takes: str) -> None:
    """Raise ValueError naming the ``keys`` not ``known`` and close matches
    (else a TypeError of a constructor would name no fix)."""
    unknown = [k for k in keys if k not in known]
    if unknown:
        close = [c for k in unknown
                 for c in difflib.get_close_matches(k, known, n=1)]
        raise ValueError(
            f'{has_no} {", ".join(unknown)}: {takes} {", ".join(known)}.'
            + (f' Did you mean {", ".join(close)}?' if close else ''))


def _backbone_widths(backbone: dict) -> Tuple[List[int], str]:
    """Output widths of a ``RepViT`` config, and the settings deciding them."""
    import torch

    from ..models import RepViT
    args = {k: v for k, v in backbone.items() if k not in ('type', 'init_cfg')}
    _refuse_unknown(args, list(inspect.signature(RepViT).parameters),
                    'model.backbone has no argument', 'RepViT takes')
    with torch.device('meta'):   # its shapes only, no memory
        model = RepViT(**args)
    settings = (f"arch {model.arch_name!r}, out_indices "
                f"{tuple(model.out_indices)}, stage_ends {model.stage_ends!r}")
    return model.out_channels, settings


def _consumers(model: dict) -> Iterator[Tuple[str, dict]]:
    """``(dotted path, config)`` of the (first) neck, or else of the heads."""
    names = ['neck'] if model.get('neck') is not None else [
        'decode_head', 'auxiliary_head']
    for name in names:
        parts = model.get(name)
        if isinstance(parts, (list, tuple)):
            for i, part in enumerate(parts[:1] if name == 'neck' else parts):
                yield f'model.{name}.{i}', part
        elif parts is not None:
            yield f'model.{name}', parts


def check_neck_widths(model: dict) -> None:
    """Raise if the neck or heads expect other widths than a RepViT gives.

    Args:
        model (dict): A model config (``cfg.model``).

    Raises:
        ValueError: A neck's or neckless head's ``in_channels`` differs
            from the widths, or ``in_index`` selects no output.
    """
    backbone = model.get('backbone') or {}
    if backbone.get('type') not in ('RepViT', 'mmrepvit.RepViT'):
        return
    widths, settings = _backbone_widths(backbone)
    for where, part in _consumers(model):
        expected = part.get('in_channels')
        expected = list(expected) if isinstance(expected, tuple) else expected
        if where.startswith('model.neck'):   # only a list is compared
            given = widths if isinstance(expected, list) else expected
        else:   # a head reading backbone outputs through in_index
            index = part.get('in_index', -1)
            try:
                given = ([widths[i] for i in index] if isinstance(
                    index, (list, tuple)) else widths[index])
            except IndexError:
                raise ValueError(
                    f'{where}.in_index={index} selects an output that the '
                    f'RepViT backbone ({settings}) does not give: its '
                    f'outputs have widths {widths}.') from None
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


def _missing(path, kind, where, hint, exists=osp.exists) -> Optional[str]:
    """Why ``path`` is missing, or None (it exists, or it is remote)."""
    if '://' in str(path) or exists(path):
        return None
    return (f'{where}: {kind} {path!r} does not exist (looked for '
            f'{osp.abspath(path)!r}). {hint}')


def _image_suffix(dataset: dict, scope: str) -> Optional[str]:
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


def _dataset_problems(where: str, dataset: dict, scope: str) -> Iterator:
    """What a dataset lacks locally (or None)."""
    root = dataset.get('data_root') or ''
    if dataset.get('backend_args') or '://' in root:
        return     # another storage backend
    if root and not osp.isdir(root):
        fix = (f'Put the data there or point the config at it, e.g. '
               f'--cfg-options {where}.data_root=/path/to/data.')
        if osp.basename(osp.normpath(root)) in ('demo_ade', 'demo_coco'):
            fix += (' The demo data are written by tools/demo.py or '
                    'tools/dataset_converters/make_demo_'
                    f"{'ade' if 'ade' in root else 'coco'}.py.")
        yield _missing(root, 'data_root', where, fix, osp.isdir)
        return
    ann_file = dataset.get('ann_file')
    if ann_file:   # osp.join keeps an absolute path, as MMEngine does
        yield _missing(osp.join(root, ann_file), 'ann_file', where,
                       f'Check {where}.ann_file and data_root.')
    prefixes = dataset.get('data_prefix') or {}
    for key, prefix in prefixes.items():
        problem = prefix and _missing(
            osp.join(root, prefix), f'data_prefix.{key} directory', where,
            f'Check {where}.data_prefix and data_root.', osp.isdir)
        if problem:
            yield problem
            return
    # Without ann_file, MMSegmentation lists img_path: empty, it fails oddly.
    images = prefixes.get('img_path')
    if ann_file or not images or '://' in images:
        return
    suffix, images = _image_suffix(dataset, scope), osp.join(root, images)
    if suffix and not any(name.endswith(suffix) for _, _, files
                          in os.walk(images) for name in files):
        yield (f'{where}: no {suffix!r} file in {images!r}, so the dataset '
               f'would be empty. Check data_root, data_prefix.img_path and '
               f'img_suffix.')


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
        where = loader.replace('_dataloader', '_evaluator')
        metrics = cfg.get(where) or []
        if isinstance(metrics, dict):
            metrics = metrics.get('metrics', metrics)
        for metric in [metrics] if isinstance(metrics, dict) else metrics:
            if isinstance(metric, dict) and metric.get('ann_file'):
                problems.append(_missing(
                    metric['ann_file'], 'ann_file', where,
                    f'Set {where}.ann_file to the annotation file.',
                    osp.isfile))
    problems = dict.fromkeys(filter(None, problems))   # once each
    if problems:
        raise FileNotFoundError('\n'.join(problems))


def checkpoint_problem(path: str, full: bool = True) -> Optional[str]:
    """Why ``path`` is not a whole checkpoint file, unpickling nothing.

    Args:
        path (str): A local file.
        full (bool): Check each member's CRC-32 (reading the whole file),
            else only the zip directory. Defaults to ``True``.

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
            pickled = f.read(1) == b'\x80'   # a pre-zip pickle checkpoint
        return None if pickled else ('it is not a complete checkpoint '
                                     'archive (cut short, or not a '
                                     'checkpoint at all)')
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip() if full else None
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        return f'its archive is damaged ({e})'
    return bad and f'its member {bad!r} is corrupted (CRC mismatch)'


def check_load_from(cfg) -> None:
    """Raise if ``cfg.load_from`` is a local path but no whole checkpoint."""
    path = cfg.get('load_from')
    problem = path and '://' not in path and checkpoint_problem(
        path, full=False)   # full=False: torch.load checks the CRCs
    if problem:
        error = ValueError if osp.exists(path) else FileNotFoundError
        raise error(f'Cannot load the checkpoint {path!r}: {problem} (looked '
                    f'for {osp.abspath(path)!r}). Check the path, or save or '
                    f'download the checkpoint again.')


def check_loader_keys(cfg, loaders: Sequence[str]) -> None:
    """Raise if a dataloader config has a key that neither MMEngine's
    ``Runner.build_dataloader`` nor ``torch.utils.data.DataLoader`` takes
    (else a TypeError of the DataLoader, naming no setting)."""
    from torch.utils.data import DataLoader
    known = list(dict.fromkeys([   # Runner.build_dataloader's, DataLoader's
        'dataset', 'sampler', 'batch_sampler', 'collate_fn', 'worker_init_fn',
        'num_batch_per_epoch', 'disable_subprocess_warning',
        *inspect.signature(DataLoader).parameters]))
    for loader in loaders:
        settings = cfg.get(loader)
        if isinstance(settings, dict):   # not None, nor a built DataLoader
            _refuse_unknown(settings, known, f'{loader} has no setting',
                            'a dataloader takes')


def check_config(cfg, loaders: Sequence[str]) -> None:
    """Run the checks ``tools/train.py`` and ``tools/test.py`` run."""
    check_neck_widths(cfg.model)
    check_load_from(cfg)
    check_loader_keys(cfg, loaders)
    check_data_paths(cfg, loaders)
