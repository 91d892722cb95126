# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
"""RepViT backbones for MMDetection 3.x and MMSegmentation 1.x.

Importing this package registers ``RepViT`` in MMEngine's root ``MODELS``
registry (so ``type='RepViT'`` builds under the ``mmdet`` and ``mmseg``
scopes), ``AlignResize`` in its root ``TRANSFORMS`` and the hooks that let a
killed training run resume (``AtomicCheckpointHook``, ``RandomStateHook``) in
its root ``HOOKS``, and lets MMEngine's own checkpoints load with
``torch.load(weights_only=True)``. It needs neither mmdet nor mmseg.
"""
from .checkpoint import (is_fused, official_to_timm, read_backbone_state,
                         read_checkpoint, timm_to_official)
from .config_checks import check_neck_widths
from .models import RepViT, block_settings, switch_to_deploy
from .resume import AtomicCheckpointHook, RandomStateHook
from .safe_load import allow_mmengine_checkpoints
from .transforms import AlignResize

__version__ = '0.1.0'

allow_mmengine_checkpoints()

__all__ = ['RepViT', 'block_settings', 'switch_to_deploy', 'AlignResize',
           'read_checkpoint', 'read_backbone_state', 'is_fused',
           'official_to_timm', 'timm_to_official',
           'allow_mmengine_checkpoints', 'check_neck_widths',
           'AtomicCheckpointHook', 'RandomStateHook', '__version__']
