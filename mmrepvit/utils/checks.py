# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
"""Checks of a config before a run starts, so that a mistake is reported at
once, with the setting to change, instead of as a traceback from deep inside
a dataloader, a convolution or a loop minutes later:

- :func:`check_neck_widths`: the neck (or, without one, the heads) expects
  the widths a ``RepViT`` backbone gives;
- :func:`check_data_paths`: the datasets' directories and annotation files,
  and the evaluators' annotation files, exist, and a dataset that lists a
  directory finds images there;
- :func:`check_load_from`: ``load_from`` is a whole checkpoint file;
- :func:`warn_ineffective_options`: ``--cfg-options`` keys that would change
  nothing.

``tools/train.py`` and ``tools/test.py`` call them (through
:func:`check_config`); a user who builds models another way can call
:func:`check_neck_widths` on ``cfg.model``.
"""
import difflib
import inspect
import logging
import os
import os.path as osp
from typing import Iterator, List, Sequence, Tuple

from mmengine.logging import print_log

from .checkpoint import checkpoint_problem

# Top-level config keys that MMEngine's Runner (or the tools) read; any other
# top-level key is a variable of the config file, used only while the file is
# parsed.
_READ_BY_RUNNER = {
    'custom_imports', 'runner_type', 'model_wrapper_cfg', 'sync_bn',
    'find_unused_parameters', 'activation_checkpointing',
    'efficient_conv_bn_eval', 'compile'
}


def _runner_keys() -> set:
    from mmengine.runner import Runner
    params = inspect.signature(Runner.__init__).parameters
    return _READ_BY_RUNNER | (set(params) - {'self'})


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
    """What the tools check before a run: :func:`check_load_from`, and
    :func:`check_data_paths` for ``loaders``."""
    check_load_from(cfg)
    check_data_paths(cfg, loaders)


# ------------------------------------------------------------- cfg-options
def _find(cfg, parts: List[str]):
    """Follow ``parts`` into ``cfg``: (the deepest node reached, how many
    parts were found)."""
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
    """Warn about ``--cfg-options`` keys that will change nothing, before
    they are merged into ``cfg``; returns the warnings.

    - A key that is not in the config, where one with a similar name is
      (``model.backbone.with_cpp``): probably a typo. The warning names the
      closest existing keys.
    - A new top-level key that MMEngine's Runner does not read.
    - An existing top-level key that the Runner does not read (such as
      ``max_iters`` or ``data_root``): a variable of the config file, already
      substituted where the file uses it. The warning names the settings
      with the same name.
    """
    runner_keys = _runner_keys()
    cfg = cfg.to_dict() if hasattr(cfg, 'to_dict') else cfg
    warnings = []
    for key in options:
        parts = key.split('.')
        node, found = _find(cfg, parts)
        if found < len(parts):
            name = parts[found]
            siblings = [str(k) for k in node] if isinstance(node, dict) \
                else []
            close = difflib.get_close_matches(name, siblings, n=3,
                                              cutoff=0.75)
            parent = '.'.join(parts[:found])
            similar = ', '.join(f'{parent}.{c}' if parent else c
                                for c in close)
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
