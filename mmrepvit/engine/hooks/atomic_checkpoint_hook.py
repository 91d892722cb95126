# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
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
        part = f'{filepath}.part'
        directory = osp.dirname(osp.abspath(part))
        os.makedirs(directory, exist_ok=True)
        with open(part, 'wb') as f:
            f.write(obj)
            f.flush()
            os.fsync(f.fileno())
        os.replace(part, filepath)
        # fsync the directory too, or a machine crash can undo the rename
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """``CheckpointHook`` that a kill cannot leave without a whole checkpoint.

    MMEngine 0.10.7's hook writes into the final file and first deletes what
    falls out of ``max_keep_ckpts``: a kill leaves a truncated newest file
    and no older one. Here local checkpoints are written atomically, dropped
    ones deleted after the new one exists, and a killed write's
    ``*.pth.part`` files when training starts.

    Args:
        *args: ``CheckpointHook``'s positional arguments (``interval``, ...).
        backend_args (dict, optional): File backend arguments. Defaults to
            ``None``: the atomic backend for a local ``out_dir``.
        file_client_args (dict, optional): Deprecated, as in
            ``CheckpointHook``. Defaults to ``None``.
        **kwargs: ``CheckpointHook``'s keyword arguments.
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
        if isinstance(self.file_backend, LocalBackend) and runner.rank == 0:
            for part in glob.glob(osp.join(self.out_dir, '*.pth.part')):
                os.remove(part)

    def _save_checkpoint_with_step(self, runner, step, meta):
        # MMEngine removes what falls out of max_keep_ckpts before saving:
        # defer that until the new checkpoint (and last_checkpoint) exist.
        backend, dropped = self.file_backend, []
        backend.remove = backend.rmtree = dropped.append
        try:
            super()._save_checkpoint_with_step(runner, step, meta)
        finally:
            del backend.remove, backend.rmtree   # the class's methods again
        for path in dropped:
            (backend.rmtree if backend.isdir(path) else backend.remove)(path)
