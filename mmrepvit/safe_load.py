# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
"""Let ``torch.load(weights_only=True)`` read MMEngine checkpoints.

PyTorch >= 2.6 unpickles with ``weights_only=True`` by default, and MMEngine
0.10.7 calls ``torch.load`` without saying otherwise. MMEngine's own training
checkpoints hold, besides tensors, the message hub's state: ``HistoryBuffer``
objects and numpy arrays and scalars. Without help, resuming fails with an
``UnpicklingError``.

Instead of falling back to ``weights_only=False`` (which would execute whatever a
pickle asks for), this allow-lists exactly those data types with
``torch.serialization.add_safe_globals``. They carry data only: rebuilding them
calls no user code. A ``HistoryBuffer`` also pickles its statistics methods as
``getattr(HistoryBuffer, 'mean')``; for that, ``getattr`` is replaced by
:func:`history_buffer_getattr`, which resolves only the statistics registered
on ``HistoryBuffer`` and refuses every other lookup. Checkpoints that need
anything else are still refused.
"""
import pickle

import torch


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
        f'Refusing getattr({obj!r}, {name!r}) while loading a checkpoint: only '
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
        types += [getattr(dtypes, n) for n in dir(dtypes)
                  if n.endswith('DType') and isinstance(getattr(dtypes, n), type)]
    return types


def allow_mmengine_checkpoints() -> bool:
    """Allow-list the data types MMEngine checkpoints contain for
    ``torch.load(weights_only=True)``. Returns False where this PyTorch has no
    ``add_safe_globals`` (< 2.4, which does not default to weights_only)."""
    add = getattr(torch.serialization, 'add_safe_globals', None)
    if add is None:
        return False
    add(_mmengine_checkpoint_types() +
        [(history_buffer_getattr, 'builtins.getattr'),
         (history_buffer_getattr, '__builtin__.getattr')])
    return True
