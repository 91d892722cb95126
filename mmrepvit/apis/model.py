# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
"""Build the model of a config, and load a whole model's checkpoint."""
import copy
import logging
from typing import Optional, Union

import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import MODELS, init_default_scope
from mmengine.runner.checkpoint import load_state_dict

from ..models.utils import (
    detect_layout,
    extract_state_dict,
    is_fused,
    is_unfused,
)
from ..utils.checkpoint import read_checkpoint


def build_model(config: Union[str, Config], seed: int = 0) -> nn.Module:
    """The model of an MMDetection / MMSegmentation config, for inference
    and analysis.

    Args:
        config (str | Config): A config file or a loaded config (not
            changed).
        seed (int): Seed of the random initialisation. Defaults to ``0``.

    Returns:
        nn.Module: The model with seeded random weights (no pretrained
        weights are loaded), SyncBN turned into BN (the same computation in
        eval mode, and what runs on CPU tensors), in eval mode; the
        config's scope is made current.
    """
    cfg = config if isinstance(config, Config) else Config.fromfile(config)
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.pop('pretrained', None)
    if model_cfg.get('backbone'):
        model_cfg.backbone.init_cfg = None
    torch.manual_seed(seed)
    model = revert_sync_batchnorm(MODELS.build(model_cfg))
    # MMEngine reports every parameter's initialisation at INFO: a thousand
    # lines that would bury what the calling tool prints
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        model.init_weights()
    finally:
        logger.setLevel(level)
    return model.eval()


def load_model_weights(model: nn.Module, checkpoint: str,
                       contents: Optional[dict] = None) -> dict:
    """Load a whole model's checkpoint strictly, with MMEngine's loader.

    Either form of RepViT weights loads (the backbone adapts its form).

    Args:
        model (nn.Module): The model the checkpoint was saved from.
        checkpoint (str): Its path or URL, read with
            :func:`mmrepvit.utils.read_checkpoint` unless ``contents``.
        contents (dict, optional): The file as read already.
            Defaults to ``None``.

    Returns:
        dict: The checkpoint.

    Raises:
        ValueError: no key matches the model (a bare backbone checkpoint is
            named as one, with where it goes instead).
    """
    ckpt = read_checkpoint(checkpoint) if contents is None else contents
    source = f'checkpoint {checkpoint!r}'
    state = extract_state_dict(ckpt, source=source)
    own = model.state_dict()
    if own and not own.keys() & state.keys():
        bare = (detect_layout(state) == 'timm' or is_fused(state)
                or is_unfused(state))
        raise ValueError(
            f'No tensor of {source} matches the {type(model).__name__}: its '
            f'keys look like {list(state)[:3]}, the model\'s like '
            f'{list(own)[:3]}.' + (
                ' It holds a bare RepViT backbone, not a whole model: give '
                'it to the backbone config as init_cfg=dict(type='
                '"Pretrained", checkpoint=...), or export it with '
                'tools/deploy/export_onnx.py ARCH_OR_CONFIG CKPT OUT.onnx '
                '--backbone-only.' if bare else ''))
    load_state_dict(model, state, strict=True)
    return ckpt
