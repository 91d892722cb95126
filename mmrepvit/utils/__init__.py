# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
# Only what the models need: config and check helpers import the models, so
# they are imported by name (mmrepvit.utils.config, mmrepvit.utils.checks).
from .checkpoint import (
    checkpoint_problem,
    find_resume_checkpoint,
    read_checkpoint,
)
from .compat import allow_mmengine_checkpoints

__all__ = ['checkpoint_problem', 'find_resume_checkpoint', 'read_checkpoint',
           'allow_mmengine_checkpoints']
