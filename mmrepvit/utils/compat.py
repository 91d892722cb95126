# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
"""Workarounds for upstream bugs: the version each is for, when it can go.

- ``allow_mmengine_checkpoints``: MMEngine 0.10.7 resumes with torch.load's
  default, weights-only from PyTorch 2.6. Can go once MMEngine loads its
  checkpoints with ``weights_only=True``.
- ``safe_mmengine_loads``: MMEngine 0.10.7 downloads with weights_only=False
  (any PyTorch), loads files with the default (unsafe before PyTorch 2.6).
  Can go once it downloads weights-only and PyTorch < 2.6 is unsupported.
- ``safe_load_kwargs``: PyTorch < 2.4 has no ``add_safe_globals``: a
  restricted unpickler instead. Can go with PyTorch < 2.4.
- ``end_gloo_job``: gloo jobs of PyTorch 2.1 to 2.13 on Python 3.11+ abort
  at exit. Can go when a CPU ``tools/dist_train.sh`` exits 0 without it.
- ``write_test_metrics_on_rank0_only``: MMEngine 0.10.7's LoggerHook writes
  the test metrics JSON on every rank. Can go once its ``after_test_epoch``
  writes on the main process only.
- ``use_cpu_distributed``: MMEngine 0.10.7's launcher assumes CUDA; SyncBN
  does not run on CPU. Can go when MMEngine launches CPU processes itself.
- ``onnx_export_kwargs``: PyTorch 2.9+ exports with dynamo by default, < 2.5
  has no ``dynamo`` argument. Can go with PyTorch < 2.5 (pass dynamo=False).
- ``calibration_cache_kwargs``: onnxruntime 1.23 and older (1.20.1 on Python
  3.10) lack ``calibration_cache_path``. Can go with Python 3.10.
"""
import atexit
import codecs
import collections
import functools
import inspect
import logging
import os
import pickle
import sys
from types import SimpleNamespace

import numpy as np
import torch
import torch.distributed as dist
from mmengine.logging import HistoryBuffer, print_log
from mmengine.runner import CheckpointLoader
from mmengine.runner import checkpoint as mmengine_checkpoint
from mmengine.utils import digit_version

_GETATTR = ('builtins.getattr', '__builtin__.getattr')


def history_buffer_getattr(obj, name: str):
    """The only ``getattr`` allowed: a ``HistoryBuffer`` statistics method."""
    # The four defaults are registered lazily, by the first HistoryBuffer.
    allowed = {'min', 'max', 'current', 'mean'}.union(
        HistoryBuffer._statistics_methods)
    if obj is HistoryBuffer and name in allowed:
        return getattr(obj, name)
    raise pickle.UnpicklingError(
        f'Refusing getattr({obj!r}, {name!r}) while loading a checkpoint: '
        f'only HistoryBuffer statistics methods are allowed.')


def _mmengine_checkpoint_types() -> list:
    # numpy's array and scalar rebuilders (in np._core or np.core); numpy
    # >= 1.25 pickles dtypes as numpy.dtypes.Float64DType, ...
    dtypes = vars(getattr(np, 'dtypes', SimpleNamespace())).items()
    return [HistoryBuffer, np.ndarray, np.dtype, np.zeros(0).__reduce__()[0],
            np.float64(0).__reduce__()[0]] + [
        t for n, t in dtypes if n.endswith('DType') and isinstance(t, type)]


def allow_mmengine_checkpoints() -> bool:
    """Allow-list MMEngine checkpoints' types for ``weights_only`` loads.

    Returns:
        bool: False where PyTorch has no ``add_safe_globals`` (< 2.4).
    """
    add = getattr(torch.serialization, 'add_safe_globals', None)
    if add is None:
        return False
    add(_mmengine_checkpoint_types() +
        [(history_buffer_getattr, name) for name in _GETATTR])
    return True


@functools.lru_cache(maxsize=None)
def _allowed_globals() -> dict:
    """PyTorch's weights-only globals and MMEngine's types, by full name."""
    allowed = dict(torch._weights_only_unpickler._get_allowed_globals())
    allowed.update(dict.fromkeys(_GETATTR, history_buffer_getattr))
    # As PyTorch >= 2.4; protocol 2 writes bytes as codecs.encode(str, ...).
    for obj in _mmengine_checkpoint_types() + [
            codecs.encode, bytearray, complex, set, collections.Counter]:
        path = f'{obj.__module__}.{obj.__qualname__}'
        for alias in (path, path.replace('numpy.core.', 'numpy._core.'),
                      path.replace('numpy._core.', 'numpy.core.')):
            allowed[alias] = obj
    return allowed


class _RestrictedUnpickler(pickle.Unpickler):

    def find_class(self, module, name):
        allowed = _allowed_globals()
        if f'{module}.{name}' in allowed:
            return allowed[f'{module}.{name}']
        raise pickle.UnpicklingError(
            f'Refusing GLOBAL {module}.{name}: not a type that weights or '
            f'MMEngine checkpoints hold.')


def safe_load_kwargs() -> dict:
    """``torch.load`` arguments that unpickle no code."""
    if hasattr(torch.serialization, 'add_safe_globals'):
        return dict(weights_only=True)
    return dict(weights_only=False, pickle_module=SimpleNamespace(
        __name__='mmrepvit_restricted_pickle', Unpickler=_RestrictedUnpickler,
        load=lambda f, **kwargs: _RestrictedUnpickler(f, **kwargs).load()))


#: What :func:`mmrepvit.utils.read_checkpoint` passes to ``torch.load``.
SAFE_LOAD_KWARGS = safe_load_kwargs()


def safe_mmengine_loads(reader) -> bool:
    """Make MMEngine's ``CheckpointLoader`` read with ``reader(filename,
    map_location)`` where it would unpickle anything: downloads on every
    PyTorch, local files before 2.6 (then True is returned)."""
    # named as MMEngine's (which it logs); also what load_from_http calls
    # (on rank 0 first; cached where torch.hub is) as load_url
    def load_from_local(filename, map_location=None, **kwargs):
        return reader(filename, map_location)

    mmengine_checkpoint.load_url = load_from_local
    if digit_version(torch.__version__) >= digit_version('2.6.0'):
        return False
    # registered, and as the name its open-mmlab:// loader calls
    mmengine_checkpoint.load_from_local = load_from_local
    CheckpointLoader.register_scheme('', force=True)(load_from_local)
    return True


def onnx_export_kwargs(export=None) -> dict:
    """``export`` (torch.onnx's) arguments for the TorchScript exporter."""
    # dynamo emits opset 18 and could not convert RepViT's graph to 17.
    params = inspect.signature(export or torch.onnx.export).parameters
    return dict(dynamo=False) if 'dynamo' in params else {}


def calibration_cache_kwargs(path: str) -> dict:
    """``quantize_static`` arguments caching calibration in ``path``."""
    from onnxruntime.quantization import quantize_static
    return {'calibration_cache_path': path} if 'calibration_cache_path' in \
        inspect.signature(quantize_static).parameters else {}


def end_gloo_job() -> None:
    """Exit 0 without finalising, if this is a rank of a gloo group."""
    # gloo threads still hold tensors; Python 3.11+ finalising pthread_exits
    # them into a noexcept destructor: std::terminate. So never finalise.
    if dist.is_available() and dist.is_initialized() and \
            dist.get_backend() == 'gloo':
        dist.barrier()
        dist.destroy_process_group()
        atexit._run_exitfuncs()   # what finalisation would run: logging, ...
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def write_test_metrics_on_rank0_only(runner) -> None:
    """Make LoggerHooks of ranks other than 0 log test metrics, not write."""
    # Concurrent writes to the one file can leave it corrupt ('Extra data').
    from mmengine.dist import is_main_process
    from mmengine.hooks import LoggerHook

    def log_only(runner, metrics=None):
        _, line = runner.log_processor.get_log_after_epoch(
            runner, len(runner.test_dataloader), 'test', with_non_scalar=True)
        runner.logger.info(line)

    for hook in runner.hooks:
        if isinstance(hook, LoggerHook) and not is_main_process():
            hook.after_test_epoch = log_only


def use_cpu_distributed(cfg) -> None:
    """Run distributed jobs on CPU processes with the gloo backend."""
    # Not MMEngine's launcher (it sets a CUDA device); CPU DDP: device_ids=None
    cfg.env_cfg = cfg.get('env_cfg', {})
    cfg.env_cfg.setdefault('dist_cfg', {})['backend'] = 'gloo'
    if cfg.launcher == 'pytorch' and not dist.is_initialized():
        dist.init_process_group(backend='gloo')
    wrapper = cfg.get('model_wrapper_cfg') or dict(
        type='MMDistributedDataParallel', broadcast_buffers=False,
        find_unused_parameters=cfg.get('find_unused_parameters', False))
    cfg.model_wrapper_cfg = dict(wrapper, device_ids=None)
    if replace_syncbn(cfg.model):   # SyncBatchNorm raises on CPU tensors
        print_log('No CUDA: SyncBN layers run as BN in each CPU process.',
                  logger='current', level=logging.WARNING)


def replace_syncbn(node) -> bool:
    """Turn ``type='SyncBN'`` into 'BN' in place; True if there was one."""
    found = isinstance(node, dict) and node.get('type') == 'SyncBN'
    if found:
        node['type'] = 'BN'
    children = node.values() if isinstance(node, dict) else \
        node if isinstance(node, (list, tuple)) else ()
    for child in children:
        found |= replace_syncbn(child)
    return found
