# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from ..load_check import refuse_unfit_checkpoint


@HOOKS.register_module()
class RefuseUnfitCheckpointHook(Hook):
    """:func:`refuse_unfit_checkpoint` as a hook (what ``tools/test.py``
    adds): set up before the run, which then loads the checkpoint.

    Args:
        checkpoint (str): The checkpoint the runner loads, named in the
            error.
        whole (bool): Every weight must come from it. Defaults to ``True``.
    """

    def __init__(self, checkpoint: str, whole: bool = True):
        self.checkpoint = checkpoint
        self.whole = whole

    def before_run(self, runner) -> None:
        refuse_unfit_checkpoint(runner, self.checkpoint, self.whole)
