# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
from .ckpt_convert import (
    BackboneState,
    backbone_state_dict,
    check_backbone_fit,
    detect_layout,
    is_fused,
    is_unfused,
    official_to_timm,
    timm_to_official,
)

__all__ = ['BackboneState', 'backbone_state_dict', 'check_backbone_fit',
           'detect_layout', 'is_fused', 'is_unfused', 'official_to_timm',
           'timm_to_official']
