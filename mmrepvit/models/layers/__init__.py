# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
from .repvit_blocks import (
    Conv2dBN,
    RepVGGDW,
    RepViTBlock,
    SqueezeExcite,
    block_settings,
    fuse_modules,
)

__all__ = ['Conv2dBN', 'RepVGGDW', 'RepViTBlock', 'SqueezeExcite',
           'block_settings', 'fuse_modules']
