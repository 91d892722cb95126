# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
# config and checks import the models: imported by module name
from .checkpoint import (
    checkpoint_problem,
    extract_state_dict,
    find_resume_checkpoint,
    read_checkpoint,
)
from .compat import allow_mmengine_checkpoints

__all__ = ['checkpoint_problem', 'extract_state_dict',
           'find_resume_checkpoint', 'read_checkpoint',
           'allow_mmengine_checkpoints']
