# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
from .layers import Conv2dBN, RepVGGDW, RepViTBlock, SqueezeExcite
from .repvit import RepViT, block_settings, switch_to_deploy

__all__ = ['RepViT', 'block_settings', 'switch_to_deploy', 'Conv2dBN',
           'RepVGGDW', 'RepViTBlock', 'SqueezeExcite']
