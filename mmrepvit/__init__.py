# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
"""RepViT backbones for MMDetection 3.x and MMSegmentation 1.x.

Importing this package registers ``RepViT`` in MMEngine's root ``MODELS``
registry (so ``type='RepViT'`` builds under the ``mmdet`` and ``mmseg``
scopes), ``AlignResize`` in its root ``TRANSFORMS`` and its hooks in
``HOOKS``, and lets MMEngine's own checkpoints load with
``torch.load(weights_only=True)``. It needs neither mmdet nor mmseg (nor
onnx, which only the ONNX export imports).
"""
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

__version__ = '0.1.0'

allow_mmengine_checkpoints()

__all__ = ['RepViT', 'block_settings', 'switch_to_deploy', 'AlignResize',
           'fuse_model', 'export_onnx', 'FuseModelHook',
           'AtomicCheckpointHook', 'RandomStateHook',
           'SegTestVisualizationHook', 'read_checkpoint', 'is_fused',
           'is_unfused', 'official_to_timm', 'timm_to_official',
           'allow_mmengine_checkpoints', 'check_neck_widths', '__version__']
