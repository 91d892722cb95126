# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
from .backbones import RepViT
from .layers import (
    Conv2dBN,
    RepVGGDW,
    RepViTBlock,
    SqueezeExcite,
    block_settings,
)

__all__ = ['RepViT', 'block_settings', 'Conv2dBN', 'RepVGGDW', 'RepViTBlock',
           'SqueezeExcite']
