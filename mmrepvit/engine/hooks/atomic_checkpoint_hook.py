# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
"""``CheckpointHook`` whose checkpoints a kill cannot break."""
import glob
import os
import os.path as osp
from typing import Optional

from mmengine.fileio import LocalBackend, register_backend
from mmengine.hooks import CheckpointHook
from mmengine.registry import HOOKS


@register_backend('atomic_local')
class AtomicLocalBackend(LocalBackend):
    """``LocalBackend`` whose ``put`` is atomic: no reader sees half a file."""

    def put(self, obj: bytes, filepath) -> None:
        filepath = str(filepath)
        os.makedirs(osp.dirname(osp.abspath(filepath)), exist_ok=True)
        partial = filepath + '.part'
        with open(partial, 'wb') as f:
            f.write(obj)
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, filepath)
        # Make the rename itself durable (a crash of the machine right after
        # it could otherwise bring back the old directory entry).
        directory = os.open(osp.dirname(osp.abspath(filepath)), os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


@HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """``CheckpointHook`` that a kill cannot leave without a whole checkpoint.

    MMEngine 0.10.7's ``CheckpointHook`` writes straight into the final file
    and, with ``max_keep_ckpts``, deletes the oldest kept checkpoint before
    writing the new one: a kill during the write leaves a truncated newest
    file and no older one. Here local checkpoints are written through
    :class:`AtomicLocalBackend` (unless ``backend_args`` or
    ``file_client_args`` choose another backend), the checkpoint that
    ``max_keep_ckpts`` drops is deleted only after the new one is written,
    and ``*.pth.part`` files of a killed write are deleted when training
    starts.

    Args:
        *args: ``CheckpointHook``'s positional arguments (``interval``, ...).
        backend_args (dict, optional): File backend arguments; by default
            the atomic local backend. Defaults to ``None``.
        file_client_args (dict, optional): Deprecated in MMEngine, as in
            ``CheckpointHook``. Defaults to ``None``.
        **kwargs: ``CheckpointHook``'s keyword arguments (``max_keep_ckpts``,
            ``out_dir``, ...).
    """

    def __init__(self, *args, backend_args: Optional[dict] = None,
                 file_client_args: Optional[dict] = None, **kwargs):
        if backend_args is None and file_client_args is None and \
                '://' not in str(kwargs.get('out_dir')):
            backend_args = dict(backend='atomic_local')
        super().__init__(*args, backend_args=backend_args,
                         file_client_args=file_client_args, **kwargs)

    def before_train(self, runner) -> None:
        super().before_train(runner)
        if isinstance(self.file_backend, LocalBackend) and \
                runner.rank == 0:
            for partial in glob.glob(osp.join(self.out_dir, '*.pth.part')):
                os.remove(partial)

    def _save_checkpoint_with_step(self, runner, step, meta):
        # MMEngine's method removes the checkpoint that falls out of
        # max_keep_ckpts before saving the new one: defer those removals
        # until the new checkpoint (and last_checkpoint) exist.
        backend, dropped = self.file_backend, []
        backend.remove = lambda path: dropped.append((path, False))
        backend.rmtree = lambda path: dropped.append((path, True))
        try:
            super()._save_checkpoint_with_step(runner, step, meta)
        finally:
            del backend.remove, backend.rmtree   # the class's methods again
        for path, is_dir in dropped:
            (backend.rmtree if is_dir else backend.remove)(path)
