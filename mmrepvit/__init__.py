# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
"""RepViT backbones for MMDetection 3.x and MMSegmentation 1.x.

Importing this package registers ``RepViT`` in MMEngine's root ``MODELS``
registry (so ``type='RepViT'`` builds under the ``mmdet`` and ``mmseg``
scopes), ``AlignResize`` in its root ``TRANSFORMS``, and in its root
``HOOKS`` ``FuseModelHook`` and the hooks that let a killed training run
resume (``AtomicCheckpointHook``, ``RandomStateHook``); it also lets
MMEngine's own checkpoints load with ``torch.load(weights_only=True)``. It
needs neither mmdet nor mmseg (nor onnx, which only the ONNX export imports).
"""
from .checkpoint import (is_fused, is_unfused, official_to_timm,
                         read_backbone_state, read_checkpoint,
                         timm_to_official, to_backbone_state)
from .config_checks import check_neck_widths
from .deploy import FuseModelHook, export_onnx, fuse_model
from .models import RepViT, block_settings, switch_to_deploy
from .resume import AtomicCheckpointHook, RandomStateHook
from .safe_load import allow_mmengine_checkpoints
from .transforms import AlignResize

__version__ = '0.1.0'

allow_mmengine_checkpoints()

__all__ = ['RepViT', 'block_settings', 'switch_to_deploy', 'AlignResize',
           'fuse_model', 'export_onnx', 'FuseModelHook',
           'read_checkpoint', 'read_backbone_state', 'to_backbone_state',
           'is_fused', 'is_unfused',
           'official_to_timm', 'timm_to_official',
           'allow_mmengine_checkpoints', 'check_neck_widths',
           'AtomicCheckpointHook', 'RandomStateHook', '__version__']
