# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from ...apis import fuse_model


@HOOKS.register_module()
class FuseModelHook(Hook):
    """Fuse the model right before testing, after its checkpoint loaded
    (what ``tools/test.py --fuse`` adds): :func:`mmrepvit.fuse_model` with
    ``channels_last``. Only testing; training and validation are left alone.

    Args:
        channels_last (bool): Also run backbone and neck in channels_last.
            Defaults to ``False``.
    """

    priority = 'VERY_HIGH'

    def __init__(self, channels_last: bool = False):
        self.channels_last = channels_last

    def before_test(self, runner) -> None:
        fuse_model(runner.model, self.channels_last)
