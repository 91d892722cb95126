# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
"""Hooks that kill the training process at a fixed point, for the resume
tests (tests/test_resume.py). A test config imports this module with
``custom_imports`` (the test puts tests/ on the child's PYTHONPATH); nothing
else uses it."""
import os
import resource
import signal

from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class KillAfterIteration(Hook):
    """SIGKILL the process right after training iteration ``iteration``
    (counted from 1): after LoggerHook logged it, before CheckpointHook
    could save it (the priority lies between theirs)."""

    priority = 'LOW'

    def __init__(self, iteration: int):
        self.iteration = iteration

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        if runner.iter + 1 == self.iteration:
            os.kill(os.getpid(), signal.SIGKILL)


@HOOKS.register_module()
class KillWhileSaving(Hook):
    """Let the kernel kill the process in the middle of writing the
    checkpoint of iteration ``iteration``: files may grow to 1 MiB only, and
    a write beyond that gets SIGXFSZ, whose default action ends the process
    (Python ignores SIGXFSZ, so its default is restored first)."""

    limit = 1 << 20

    def __init__(self, iteration: int):
        self.iteration = iteration

    def before_save_checkpoint(self, runner, checkpoint):
        if runner.iter + 1 == self.iteration:
            signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
            _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
            resource.setrlimit(resource.RLIMIT_FSIZE, (self.limit, hard))
