# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
from .atomic_checkpoint_hook import AtomicCheckpointHook
from .distributed_job_hook import DistributedJobHook
from .fuse_model_hook import FuseModelHook
from .random_state_hook import RandomStateHook
from .refuse_unfit_checkpoint_hook import RefuseUnfitCheckpointHook
from .seg_visualization_hook import SegTestVisualizationHook

__all__ = ['AtomicCheckpointHook', 'DistributedJobHook', 'FuseModelHook',
           'RandomStateHook', 'RefuseUnfitCheckpointHook',
           'SegTestVisualizationHook']
