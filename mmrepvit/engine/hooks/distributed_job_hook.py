# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from ...utils.compat import end_gloo_job, write_test_metrics_on_rank0_only


@HOOKS.register_module()
class DistributedJobHook(Hook):
    """Run and end a distributed job as MMEngine 0.10.7 and gloo need.

    Writes the test metrics file on rank 0 only and, after every other hook's
    ``after_run``, ends a finished gloo job's processes with status 0 (see
    :mod:`mmrepvit.utils.compat`). The tools add it with ``--launcher``.
    """

    priority = 'LOWEST'

    def before_run(self, runner) -> None:
        write_test_metrics_on_rank0_only(runner)

    def after_run(self, runner) -> None:
        end_gloo_job()
