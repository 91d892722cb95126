# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
"""RepViT backbones for MMDetection 3.x and MMSegmentation 1.x.

Importing this package registers ``RepViT`` in MMEngine's root ``MODELS``
registry (so ``type='RepViT'`` builds under the ``mmdet`` and ``mmseg`` scopes)
and, where mmcv is installed, the ``AlignResize`` transform. It needs neither
mmdet nor mmseg.
"""
from .checkpoint import (load_pretrained, official_to_timm, read_checkpoint,
                         timm_to_official)
from .models import RepViT, switch_to_deploy
from .safe_load import allow_mmengine_checkpoints

__version__ = '0.1.0'

try:
    import mmcv  # noqa: F401
except ImportError:  # the backbone alone needs only torch and mmengine
    pass
else:
    from .transforms import AlignResize  # noqa: F401

allow_mmengine_checkpoints()

__all__ = ['RepViT', 'switch_to_deploy', 'load_pretrained', 'read_checkpoint',
           'official_to_timm', 'timm_to_official',
           'allow_mmengine_checkpoints', '__version__']
