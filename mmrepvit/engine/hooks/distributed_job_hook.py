# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from ...utils.compat import end_gloo_job, write_test_metrics_on_rank0_only


@HOOKS.register_module()
class DistributedJobHook(Hook):
    """Write test metrics on rank 0 only; end a finished gloo job with
    status 0 after every other hook (see :mod:`mmrepvit.utils.compat`)."""

    priority = 'LOWEST'

    def before_run(self, runner) -> None:
        write_test_metrics_on_rank0_only(runner)

    def after_run(self, runner) -> None:
        end_gloo_job()
