# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
from .hooks import (
    AtomicCheckpointHook,
    DistributedJobHook,
    FuseModelHook,
    RandomStateHook,
    RefuseUnfitCheckpointHook,
    SegTestVisualizationHook,
)

__all__ = ['AtomicCheckpointHook', 'DistributedJobHook', 'FuseModelHook',
           'RandomStateHook', 'RefuseUnfitCheckpointHook',
           'SegTestVisualizationHook']
