# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from ...utils.compat import end_gloo_job, write_test_metrics_on_rank0_only


@HOOKS.register_module()
class DistributedJobHook(Hook):
    """Rank 0 alone writes test metrics; a finished gloo job exits 0 last."""

    priority = 'LOWEST'

    def before_run(self, runner) -> None:
        write_test_metrics_on_rank0_only(runner)

    def after_run(self, runner) -> None:
        end_gloo_job()
