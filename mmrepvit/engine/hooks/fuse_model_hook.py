# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from ...apis import fuse_model


@HOOKS.register_module()
class FuseModelHook(Hook):
    """Fuse the loaded model (:func:`mmrepvit.fuse_model`) before testing.

    Args:
        channels_last (bool): Also run backbone and neck in channels_last.
            Defaults to ``False``.
    """

    priority = 'VERY_HIGH'

    def __init__(self, channels_last: bool = False):
        self.channels_last = channels_last

    def before_test(self, runner) -> None:
        fuse_model(runner.model, self.channels_last)
