# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
"""RepViT backbones for MMDetection 3.x and MMSegmentation 1.x: importing
registers ``RepViT``, ``AlignResize`` and the hooks in MMEngine's root
registries, and makes MMEngine read local and http(s) checkpoints as
weights only (no code runs from a file) on every PyTorch."""
from .apis import export_onnx, fuse_model, switch_to_deploy
from .datasets import AlignResize
from .engine import (
    AtomicCheckpointHook,
    FuseModelHook,
    RandomStateHook,
    SegTestVisualizationHook,
)
from .models import RepViT, block_settings
from .models.utils import (
    is_fused,
    is_unfused,
    official_to_timm,
    timm_to_official,
)
from .utils import allow_mmengine_checkpoints, read_checkpoint
from .utils.checks import check_neck_widths
from .utils.compat import safe_mmengine_loads

__version__ = '0.1.0'

allow_mmengine_checkpoints()
safe_mmengine_loads(read_checkpoint)

__all__ = ['RepViT', 'block_settings', 'switch_to_deploy', 'AlignResize',
           'fuse_model', 'export_onnx', 'FuseModelHook',
           'AtomicCheckpointHook', 'RandomStateHook',
           'SegTestVisualizationHook', 'read_checkpoint', 'is_fused',
           'is_unfused', 'official_to_timm', 'timm_to_official',
           'allow_mmengine_checkpoints', 'check_neck_widths', '__version__']
