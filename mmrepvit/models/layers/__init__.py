# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
from .repvit_blocks import (
    Conv2dBN,
    RepVGGDW,
    RepViTBlock,
    SqueezeExcite,
    block_settings,
    build_features,
    conv_bn,
    custom_arch,
    fuse_modules,
    parse_out_indices,
    preserved_norm_stats,
    stage_outputs,
)

__all__ = [
    'Conv2dBN', 'RepVGGDW', 'RepViTBlock', 'SqueezeExcite', 'block_settings',
    'build_features', 'conv_bn', 'custom_arch', 'fuse_modules',
    'parse_out_indices', 'preserved_norm_stats', 'stage_outputs'
]
