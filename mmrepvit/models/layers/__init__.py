# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
from .repvit_blocks import (Conv2dBN, RepVGGDW, RepViTBlock, SqueezeExcite,
                            block_settings, conv_bn, fuse_modules,
                            preserved_norm_stats)

__all__ = ['Conv2dBN', 'RepVGGDW', 'RepViTBlock', 'SqueezeExcite',
           'block_settings', 'conv_bn', 'fuse_modules', 'preserved_norm_stats']
