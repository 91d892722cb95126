# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
"""Workarounds for upstream bugs and limits, in one place; each says the
upstream version it is for and how to tell that it can go.

- :func:`allow_mmengine_checkpoints`: MMEngine 0.10.7 calls ``torch.load``
  without ``weights_only``, which PyTorch >= 2.6 defaults to True, so its
  training checkpoints fail to load (resume). Rather than falling back to
  unsafe unpickling, the data types they hold besides tensors (the message
  hub's ``HistoryBuffer``, numpy arrays and scalars) are allow-listed, and
  ``getattr`` only resolves ``HistoryBuffer`` statistics
  (:func:`history_buffer_getattr`). Can go once MMEngine loads its own
  checkpoints under ``weights_only=True``.
- :func:`safe_load_kwargs`: PyTorch < 2.4 has no ``add_safe_globals``; a
  restricted unpickler with the same allow-list reads there. Can go with
  support for PyTorch < 2.4.
- :func:`end_gloo_job`: with gloo, PyTorch 2.1 to 2.13 on Python 3.11+
  aborts at interpreter exit after a finished job ("terminate called
  without an active exception"). Can go when a CPU ``tools/dist_train.sh``
  run exits 0 without it.
- :func:`write_test_metrics_on_rank0_only`: MMEngine 0.10.7's LoggerHook
  writes the test metrics JSON on every rank, into one file. Can go once
  ``LoggerHook.after_test_epoch`` writes on the main process only.
- :func:`use_cpu_distributed`: MMEngine 0.10.7's pytorch launcher assumes
  CUDA, and PyTorch's SyncBatchNorm does not run on CPU. Can go when
  MMEngine launches CPU processes itself.
- :func:`torchscript_onnx_export`: PyTorch 2.9+ exports with dynamo by
  default, < 2.5 has no ``dynamo`` argument. Can go with support for
  PyTorch < 2.5 (then pass ``dynamo=False``).
- :func:`calibration_cache_kwargs`: onnxruntime 1.23.2 (the last for
  Python 3.10) has no ``calibration_cache_path``; there each quantization
  calibrates again. Can go with support for Python 3.10.
"""
import codecs
import collections
import functools
import inspect
import logging
import os
import pickle
from types import SimpleNamespace

import torch
from mmengine.logging import print_log


def history_buffer_getattr(obj, name: str):
    """The only ``getattr`` a weights-only MMEngine checkpoint may call: a
    statistics method of ``HistoryBuffer`` (``mean``, ``max``, ...)."""
    from mmengine.logging import HistoryBuffer

    # The four defaults are registered lazily, by the first HistoryBuffer.
    allowed = {'min', 'max', 'current', 'mean'}
    allowed.update(HistoryBuffer._statistics_methods)
    if obj is HistoryBuffer and name in allowed:
        return getattr(obj, name)
    raise pickle.UnpicklingError(
        f'Refusing getattr({obj!r}, {name!r}) while loading a checkpoint: '
        f'only '
        f'HistoryBuffer statistics methods are allowed.')


def _mmengine_checkpoint_types() -> list:
    import numpy as np
    from mmengine.logging import HistoryBuffer

    types = [HistoryBuffer, np.ndarray, np.dtype]
    # numpy pickles arrays through this reconstructor (np.core in numpy 1.x,
    # np._core in numpy 2.x).
    for mod in ('numpy._core.multiarray', 'numpy.core.multiarray'):
        try:
            module = __import__(mod, fromlist=['_reconstruct'])
            types.append(module._reconstruct)
            types.append(module.scalar)
            break
        except (ImportError, AttributeError):
            continue
    # dtype classes such as numpy.dtypes.Float64DType (numpy >= 1.25).
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is not None:
        types += [getattr(dtypes, n) for n in dir(dtypes) if n.endswith(
            'DType') and isinstance(getattr(dtypes, n), type)]
    return types


def allow_mmengine_checkpoints() -> bool:
    """Allow-list the data types MMEngine checkpoints contain for
    ``torch.load(weights_only=True)`` (see the module's docstring).

    Returns:
        bool: False where this PyTorch has no ``add_safe_globals`` (< 2.4,
        which does not default to ``weights_only``), else True.
    """
    add = getattr(torch.serialization, 'add_safe_globals', None)
    if add is None:
        return False
    add(_mmengine_checkpoint_types() +
        [(history_buffer_getattr, 'builtins.getattr'),
         (history_buffer_getattr, '__builtin__.getattr')])
    return True


@functools.lru_cache(maxsize=None)
def _allowed_globals() -> dict:
    """What a checkpoint may name: PyTorch's own weights-only globals and
    the data types of MMEngine checkpoints (under both numpy module paths),
    by ``module.qualname``."""
    from torch import _weights_only_unpickler
    allowed = dict(_weights_only_unpickler._get_allowed_globals())
    for obj in _mmengine_checkpoint_types():
        path = f'{obj.__module__}.{obj.__qualname__}'
        allowed[path] = obj
        for a, b in (('numpy.core.', 'numpy._core.'),
                     ('numpy._core.', 'numpy.core.')):
            if path.startswith(a):
                allowed[b + path[len(a):]] = obj
    for name in ('builtins.getattr', '__builtin__.getattr'):
        allowed[name] = history_buffer_getattr
    # what PyTorch >= 2.4 allows too: containers, and bytes as pickle
    # protocol 2 (torch.save's) writes them, codecs.encode(str, 'latin1')
    allowed.update({'_codecs.encode': codecs.encode,
                    'builtins.bytearray': bytearray,
                    'builtins.complex': complex, 'builtins.set': set,
                    'collections.Counter': collections.Counter})
    return allowed


class _RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only :func:`_allowed_globals`."""

    def find_class(self, module, name):
        allowed = _allowed_globals()
        if f'{module}.{name}' in allowed:
            return allowed[f'{module}.{name}']
        raise pickle.UnpicklingError(
            f'Refusing GLOBAL {module}.{name}: not a type that weights or '
            f'MMEngine checkpoints hold.')


_RESTRICTED_PICKLE = SimpleNamespace(
    __name__='mmrepvit_restricted_pickle', Unpickler=_RestrictedUnpickler,
    load=lambda f, **kwargs: _RestrictedUnpickler(f, **kwargs).load())


def safe_load_kwargs() -> dict:
    """``torch.load`` arguments that unpickle no code.

    Returns:
        dict: ``weights_only=True`` (with :func:`allow_mmengine_checkpoints`
        applied); before PyTorch 2.4, a restricted unpickler with the same
        allow-list.
    """
    if hasattr(torch.serialization, 'add_safe_globals'):
        return dict(weights_only=True)
    return dict(weights_only=False, pickle_module=_RESTRICTED_PICKLE)


#: What :func:`mmrepvit.utils.read_checkpoint` passes to ``torch.load``
#: (the PyTorch version does not change while a process runs).
SAFE_LOAD_KWARGS = safe_load_kwargs()


def torchscript_onnx_export(*args, **kwargs) -> None:
    """``torch.onnx.export`` with the TorchScript-based exporter, on every
    PyTorch (2.9+ defaults to the dynamo exporter, which emits opset 18
    and could not convert RepViT's graph to 17; < 2.5 has no ``dynamo``)."""
    if 'dynamo' in inspect.signature(torch.onnx.export).parameters:
        kwargs['dynamo'] = False
    torch.onnx.export(*args, **kwargs)


def calibration_cache_kwargs(path: str) -> dict:
    """``quantize_static`` arguments that calibrate once and keep the
    ranges in ``path`` for later calls, where onnxruntime can."""
    from onnxruntime.quantization import quantize_static
    params = inspect.signature(quantize_static).parameters
    return {'calibration_cache_path': path} if \
        'calibration_cache_path' in params else {}


def end_gloo_job() -> None:
    """End this process with status 0 if it is a rank of a gloo process
    group, after a barrier, the group's destruction, the ``atexit``
    handlers and a flush, but without the interpreter's finalisation; else
    do nothing. :class:`mmrepvit.engine.DistributedJobHook` calls it once a
    job finished.

    Why: gloo's worker threads drop the last reference to a collective's
    tensor after completing it, which needs the GIL; once the main thread
    is finalising, Python 3.11+ ends such a thread with ``pthread_exit``,
    whose unwinding meets a ``noexcept`` destructor: ``std::terminate``.
    ``destroy_process_group`` does not stop those threads (DDP and
    PyTorch's registries keep the group alive), so the only way not to race
    them is not to finalise while they exist.
    """
    import atexit
    import sys

    import torch.distributed as dist
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


def use_cpu_distributed(cfg) -> None:
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
