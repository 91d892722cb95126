# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
import logging
import random
from typing import Optional

import numpy as np
import torch
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.registry import HOOKS
from mmengine.runner import IterBasedTrainLoop


@HOOKS.register_module()
class RandomStateHook(Hook):
    """Save the random generators' states in checkpoints; restore on resume.

    States go back before the next epoch (torch, numpy, ``random``) or, in
    iteration-based loops, iteration (torch only: MMEngine replays the data
    pipeline to skip trained batches), in resumed and uninterrupted runs
    alike. Not restored: those of ``persistent_workers`` and other ranks.
    """

    priority = 'VERY_HIGH'
    _pending: Optional[dict] = None   # states to put back
    _loaded: Optional[dict] = None    # those of a loaded checkpoint

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        state = dict(torch=torch.get_rng_state(),
                     numpy=np.random.get_state(), python=random.getstate())
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state['cuda'] = torch.cuda.get_rng_state_all()
        checkpoint['random_state'] = self._pending = state

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        self._loaded = checkpoint.get('random_state', {})

    def before_train(self, runner) -> None:
        loaded, self._loaded = self._loaded, None
        if loaded is None or (runner.iter == 0 and runner.epoch == 0):
            return     # nothing loaded, or only weights (load_from)
        if not loaded:
            print_log('The checkpoint holds no random generator states (not '
                      'saved with RandomStateHook): the resumed run draws '
                      'other random numbers than the interrupted one.',
                      logger='current', level=logging.WARNING)
        elif runner.rank == 0:
            self._pending = loaded

    def before_train_epoch(self, runner) -> None:
        if not isinstance(runner.train_loop, IterBasedTrainLoop):
            self._restore(torch_only=False)

    def before_train_iter(self, runner, batch_idx: int,
                          data_batch=None) -> None:
        self._restore(torch_only=True)

    def _restore(self, torch_only: bool) -> None:
        state, self._pending = self._pending, None
        if state is None:
            return
        torch.set_rng_state(state['torch'].cpu())
        cuda = state.get('cuda')
        if cuda and len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([s.cpu() for s in cuda])
        if not torch_only:
            np.random.set_state(tuple(state['numpy']))
            random.setstate(tuple(state['python']))
