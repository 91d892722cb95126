# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
"""Build a config's model, load a whole-model checkpoint, write it fused."""
import copy
import logging
import os
import os.path as osp
from typing import Optional, Tuple, Union

import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import MODELS, init_default_scope
from mmengine.runner.checkpoint import load_state_dict

from ..models import RepViT
from ..models.utils import detect_layout, is_fused, is_unfused
from ..utils.checkpoint import extract_state_dict, read_checkpoint
from ..utils.config import load_config
from .fuse import find_repvits, switch_to_deploy
from .onnx_export import rel_diff


def repvit_backbone_cfg(cfg: Config) -> dict:
    """``cfg.model.backbone``; raises ``ValueError`` if it is not RepViT."""
    backbone = cfg.model.get('backbone', {})
    if backbone.get('type') not in ('RepViT', 'mmrepvit.RepViT', RepViT):
        raise ValueError(
            f'The config\'s model.backbone is {backbone.get("type")!r}, not '
            f'RepViT: mmrepvit fuses and exports RepViT models only.')
    return backbone


def build_model(config: Union[str, Config], seed: int = 0) -> nn.Module:
    """The model of an MMDetection / MMSegmentation config, for analysis.

    Args:
        config (str | Config): A config file or a loaded config (kept).
        seed (int): Seed of the random initialisation. Defaults to ``0``.

    Returns:
        nn.Module: The model in eval mode, seeded random weights (no
        pretrained ones), SyncBN as BN; the config's scope made current.
    """
    torch.manual_seed(seed)
    model = init_model(config)
    # MMEngine logs every parameter's initialisation at INFO: silence it
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        model.init_weights()
    finally:
        logger.setLevel(level)
    return model.eval()


def init_model(config: Union[str, Config], checkpoint: Optional[str] = None,
               deploy: Optional[bool] = None,
               contents: Optional[dict] = None) -> nn.Module:
    """The config's model in eval mode (no pretrained weights, SyncBN as BN,
    in ``deploy`` form), loaded strictly from ``checkpoint`` if given."""
    cfg = config if isinstance(config, Config) else load_config(config)
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.pop('pretrained', None)
    if model_cfg.get('backbone'):
        model_cfg.backbone.init_cfg = None
    if deploy is not None:
        repvit_backbone_cfg(cfg)
        model_cfg.backbone.deploy = deploy
    model = revert_sync_batchnorm(MODELS.build(model_cfg)).eval()
    if checkpoint is not None:
        load_model_weights(model, checkpoint, contents)
    return model


def load_model_weights(model: nn.Module, checkpoint: str,
                       contents: Optional[dict] = None) -> None:
    """Load a whole model's checkpoint strictly, with MMEngine's loader.

    Args:
        model (nn.Module): The model the checkpoint was saved from.
        checkpoint (str): Its path or URL.
        contents (dict, optional): The file as read already.
            Defaults to ``None``: read ``checkpoint``.

    Raises:
        ValueError: The checkpoint does not fit the model (keys missing,
            unexpected or of another shape), naming them.
    """
    source = f'checkpoint {checkpoint!r}'
    state = extract_state_dict(checkpoint if contents is None else contents,
                               source=source)
    own = model.state_dict()
    if own and not own.keys() & state.keys():
        bare = (detect_layout(state) == 'timm' or is_fused(state)
                or is_unfused(state))
        raise ValueError(
            f'No tensor of {source} matches the {type(model).__name__}: its '
            f'keys look like {list(state)[:3]}, the model\'s like '
            f'{list(own)[:3]}.' + (
                ' It holds a bare RepViT backbone: give it to the backbone '
                'config as init_cfg=dict(type="Pretrained", checkpoint=...), '
                'or export it with tools/deploy/export_onnx.py ARCH_OR_CONFIG '
                'CKPT OUT.onnx --backbone-only.' if bare else ''))
    try:
        load_state_dict(model, state, strict=True)
    except RuntimeError as e:   # MMEngine's lists of keys that do not fit
        # the refusal hook's wording (imported here: the hook imports apis)
        from ..engine.hooks.refuse_unfit_checkpoint_hook import unfit_weights
        lines = str(e).splitlines()

        def keys(head):
            line = next((ln for ln in lines if ln.startswith(head)), head)
            return [k for k in line[len(head):].split(', ') if k]
        head = 'size mismatch for '
        what = unfit_weights(
            keys('missing keys in source state_dict: '),
            [ln[len(head):] for ln in lines if ln.startswith(head)],
            keys('unexpected key in source state_dict: ')) or lines[0]
        raise ValueError(
            f'{source} does not fit the {type(model).__name__} of this '
            f'config: {what}. Give a checkpoint of this config\'s model '
            f'(same type, arch and classes).') from e


def fuse_checkpoint(config: Union[str, Config], checkpoint: str, out: str,
                    check_size: Tuple[int, int] = (256, 320)) -> float:
    """Write a whole model's checkpoint in fused form.

    Args:
        config (str | Config): The config of the model the checkpoint is of.
        checkpoint (str): The training-form checkpoint.
        out (str): The fused checkpoint to write (its ``meta`` kept).
        check_size (tuple[int, int]): Size of the random input the fused
            backbone is checked on. Defaults to ``(256, 320)``.

    Returns:
        float: The maximum relative difference of the backbone outputs.

    Raises:
        ValueError: The checkpoint is fused already.
        RuntimeError: The outputs differ by more than 1e-4 relative.
    """
    cfg = config if isinstance(config, Config) else load_config(config)
    repvit_backbone_cfg(cfg)   # refuses other backbones before reading
    ckpt = read_checkpoint(checkpoint)
    # training form: only a fused checkpoint switches it to deploy on load
    model = init_model(cfg, checkpoint, deploy=False, contents=ckpt)
    backbones = find_repvits(model)
    if all(b.deploy for b in backbones):
        raise ValueError(f'{checkpoint} is fused already.')
    x = torch.randn(1, backbones[0].in_channels, *check_size,
                    generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = model.backbone(x)
        switch_to_deploy(model)
        after = model.backbone(x)
    err = rel_diff(after, before)
    if err > 1e-4:
        raise RuntimeError(f'fusion changed the backbone output by {err:.2e} '
                           f'relative (float rounding is < 1e-4); nothing '
                           f'written.')
    meta = dict(ckpt.get('meta', {}), mmrepvit_deploy=True)
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    torch.save({'meta': meta, 'state_dict': model.state_dict()}, out)
    return err
