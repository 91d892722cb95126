# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
"""Training that survives being killed.

MMEngine 0.10.7's ``CheckpointHook`` writes a checkpoint straight into its
final file and, with ``max_keep_ckpts``, deletes the oldest kept checkpoint
*before* writing the new one; a kill during the write can leave a truncated
newest file and no older one. Its checkpoints also hold no random generator
states, so a resumed run draws other random numbers (dropout, RoI sampling,
augmentation) than the run it continues.

- :class:`AtomicCheckpointHook`: ``CheckpointHook`` whose files appear whole
  or not at all (written to ``NAME.part``, synced, renamed) and whose old
  checkpoints are deleted only once the new one is complete.
- :class:`RandomStateHook`: keeps the random generators' states in every
  checkpoint and puts them back on resume.
- :func:`find_resume_checkpoint`: the checkpoint ``--resume`` continues from,
  skipping (with a warning) a newest file that is broken.
- :func:`make_resumable`: what ``tools/train.py`` does to every config.
"""
import glob
import logging
import os
import os.path as osp
import random
import re
import zipfile
from typing import List, Optional

import numpy as np
import torch
from mmengine.fileio import LocalBackend, register_backend
from mmengine.hooks import CheckpointHook, Hook
from mmengine.logging import print_log
from mmengine.registry import HOOKS
from mmengine.runner import IterBasedTrainLoop, find_latest_checkpoint

_CHECKPOINT_NAME = re.compile(r'^(epoch|iter)_(\d+)\.pth$')


@register_backend('atomic_local')
class AtomicLocalBackend(LocalBackend):
    """MMEngine's local file backend, except that :meth:`put` replaces the
    file in one step: a reader (or a later ``--resume``) sees the old file or
    the complete new one, never a part of it."""

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
    """``CheckpointHook`` that a kill cannot leave without a usable
    checkpoint.

    It takes ``CheckpointHook``'s arguments. Local checkpoints are written
    through :class:`AtomicLocalBackend` (unless ``backend_args`` or
    ``file_client_args`` choose another backend), and the checkpoint that
    ``max_keep_ckpts`` drops is deleted after the new one is written, not
    before. Leftover ``*.pth.part`` files of a killed write are deleted when
    training starts.
    """

    def __init__(self, *args, backend_args: Optional[dict] = None,
                 file_client_args: Optional[dict] = None, **kwargs):
        out_dir = kwargs.get('out_dir') or ''
        if backend_args is None and file_client_args is None and \
                '://' not in str(out_dir):
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
        # max_keep_ckpts before it saves the new one; collect those removals
        # and do them once the new checkpoint (and last_checkpoint) exist.
        backend, dropped = self.file_backend, []
        backend.remove = lambda path: dropped.append((path, False))
        backend.rmtree = lambda path: dropped.append((path, True))
        try:
            super()._save_checkpoint_with_step(runner, step, meta)
        finally:
            del backend.remove, backend.rmtree   # the class's methods again
        for path, is_dir in dropped:
            (backend.rmtree if is_dir else backend.remove)(path)


def _random_state() -> dict:
    state = dict(torch=torch.get_rng_state(), numpy=np.random.get_state(),
                 python=random.getstate())
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def _set_random_state(state: dict, generators) -> None:
    if 'torch' in generators:
        torch.set_rng_state(state['torch'].cpu())
        cuda = state.get('cuda')
        if cuda is not None and torch.cuda.is_available() and \
                len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([s.cpu() for s in cuda])
    if 'numpy' in generators:
        np.random.set_state(tuple(state['numpy']))
    if 'python' in generators:
        random.setstate(tuple(state['python']))


@HOOKS.register_module()
class RandomStateHook(Hook):
    """Save the random generators' states in every checkpoint and restore
    them on resume, so that a resumed run draws the random numbers the
    interrupted run would have drawn.

    The states are taken when a checkpoint is saved and put back where the
    training loop continues: before the next epoch (epoch-based loops: torch,
    numpy and Python's ``random``) or before the next iteration
    (iteration-based loops: torch only, because MMEngine's loop replays the
    data pipeline, and with it the numpy and ``random`` draws of the
    augmentations, to skip the batches already trained). The run that was
    not interrupted puts back the same states at the same place (a no-op
    unless something, such as validation, drew random numbers in between),
    so both continue identically.

    Not restored: the generators inside ``persistent_workers`` dataloader
    processes (a resumed run starts new workers), and, in distributed runs,
    the generators of ranks other than 0 (only rank 0 saves checkpoints).
    """

    priority = 'VERY_HIGH'

    def __init__(self):
        self._pending: Optional[dict] = None   # states to put back
        self._loaded: Optional[dict] = None    # those of a loaded checkpoint

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint['random_state'] = _random_state()
        self._pending = checkpoint['random_state']

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        self._loaded = checkpoint.get('random_state', {})

    def before_train(self, runner) -> None:
        loaded, self._loaded = self._loaded, None
        if loaded is None or (runner.iter == 0 and runner.epoch == 0):
            return     # nothing loaded, or only weights (load_from)
        if not loaded:
            print_log(
                'The checkpoint holds no random generator states (it was '
                'not saved with RandomStateHook): the resumed run draws other '
                'random numbers than the interrupted run would have.',
                logger='current', level=logging.WARNING)
        elif runner.rank == 0:
            self._pending = loaded

    def before_train_epoch(self, runner) -> None:
        if self._pending is not None and \
                not isinstance(runner.train_loop, IterBasedTrainLoop):
            _set_random_state(self._pending, ('torch', 'numpy', 'python'))
            self._pending = None

    def before_train_iter(self, runner, batch_idx: int,
                          data_batch=None) -> None:
        if self._pending is not None:
            _set_random_state(self._pending, ('torch', ))
            self._pending = None


def checkpoint_problem(path: str) -> Optional[str]:
    """Why ``path`` is not a whole checkpoint file, or None if it is.

    A file ``torch.save`` wrote (a zip archive) is checked completely: its
    central directory and every member's CRC-32, without unpickling
    anything. An old-style pickle checkpoint is accepted as it is.
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
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        return f'its archive is damaged ({e})'
    if bad is not None:
        return f'its member {bad!r} is corrupted (CRC mismatch)'
    return None


def _fallbacks(directory: str, named: Optional[str]) -> List[str]:
    """The ``epoch_N.pth`` / ``iter_N.pth`` files in ``directory`` to try
    after ``named``: those of its kind saved before it, newest first; with
    no ``named``, all of them, the last written first."""
    found = []
    for path in glob.glob(osp.join(directory, '*.pth')):
        match = _CHECKPOINT_NAME.match(osp.basename(path))
        if match:
            found.append((match.group(1), int(match.group(2)), path))
    if named is None:
        return sorted((path for _, _, path in found), key=osp.getmtime,
                      reverse=True)
    match = _CHECKPOINT_NAME.match(osp.basename(named))
    if match is None:
        return []
    kind, step = match.group(1), int(match.group(2))
    return [path for _, _, path in sorted(
        (f for f in found if f[0] == kind and f[1] < step),
        key=lambda f: -f[1])]


def find_resume_checkpoint(work_dir: str) -> Optional[str]:
    """The checkpoint that ``--resume`` (without a path) continues from.

    MMEngine's choice, the file named in ``WORK_DIR/last_checkpoint``, if it
    is whole (:func:`checkpoint_problem`); otherwise, with a warning naming
    the broken file, the newest whole checkpoint saved before it (or, if
    ``last_checkpoint`` names nothing, the whole checkpoint written last).
    None when there is no ``last_checkpoint`` (training starts from
    scratch, as in MMEngine).

    Raises:
        RuntimeError: no checkpoint is whole.
    """
    last_file = osp.join(work_dir, 'last_checkpoint')
    if not osp.isfile(last_file):
        return None
    named = find_latest_checkpoint(work_dir) or None   # '' if cut short
    broken = [] if named else [(last_file, 'it names no checkpoint')]
    directory = osp.dirname(named) if named else work_dir
    for path in ([named] if named else []) + _fallbacks(directory, named):
        problem = checkpoint_problem(path)
        if problem is None:
            if broken:
                print_log(
                    f'Cannot resume from {broken[0][0]} ({broken[0][1]}); '
                    f'resuming from {path}, the newest whole checkpoint, '
                    f'instead: the steps after it are trained again.',
                    logger='current', level=logging.WARNING)
            return path
        broken.append((path, problem))
    listing = '; '.join(f'{path}: {problem}' for path, problem in broken)
    raise RuntimeError(
        f'No usable checkpoint to resume from in {work_dir} ({listing}). '
        f'Train again without --resume, or give --resume PATH a whole '
        f'checkpoint.')


def make_resumable(cfg) -> None:
    """Use :class:`AtomicCheckpointHook` for the config's checkpoint hook
    (when it is MMEngine's plain ``CheckpointHook``) and add
    :class:`RandomStateHook`, in place."""
    hook = (cfg.get('default_hooks') or {}).get('checkpoint')
    if hook is not None and hook.get('type') in ('CheckpointHook',
                                                 'mmengine.CheckpointHook'):
        hook['type'] = 'AtomicCheckpointHook'
    custom = list(cfg.get('custom_hooks') or [])
    if not any(h.get('type') == 'RandomStateHook' for h in custom):
        custom.append(dict(type='RandomStateHook'))
    cfg.custom_hooks = custom
