# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
"""Fuse every RepViT in a whole model; run its backbone in channels_last."""
import copy
import itertools
from typing import List

import torch
import torch.nn as nn
from mmengine.model import BaseTTAModel, is_model_wrapper

from ..models import RepViT


def unwrap_model(model: nn.Module) -> nn.Module:
    """The model inside any nesting of DDP-like and ``BaseTTAModel`` wrappers.

    Args:
        model (nn.Module): A model, wrapped or not.
    """
    while is_model_wrapper(model) or isinstance(model, BaseTTAModel):
        model = model.module
    return model


def find_repvits(model: nn.Module) -> List[RepViT]:
    """Every RepViT inside ``model``; raises ``ValueError`` if none."""
    found = [m for m in model.modules() if isinstance(m, RepViT)]
    if not found:
        raise ValueError(
            f'{type(model).__name__} has no RepViT backbone: mmrepvit fuses '
            f'and exports models whose backbone is type="RepViT".')
    return found


def switch_to_deploy(model: nn.Module) -> int:
    """Call :meth:`RepViT.switch_to_deploy` on every RepViT inside a model.

    Args:
        model (nn.Module): A detector, a segmentor or a bare backbone.

    Returns:
        int: How many RepViTs were fused (not counting already fused ones).
    """
    todo = [m for m in model.modules()
            if isinstance(m, RepViT) and not m.deploy]
    for m in todo:
        m.switch_to_deploy()
    return len(todo)


def fuse_model(model: nn.Module, channels_last: bool = False) -> nn.Module:
    """Put a model in eval mode and fuse every RepViT in it, in place.

    Args:
        model (nn.Module): A detector, segmentor or RepViT, wrapped or not.
        channels_last (bool): Also :func:`use_channels_last`.
            Defaults to ``False``.

    Returns:
        nn.Module: ``model``.

    Raises:
        ValueError: The model holds no RepViT.

    Example:
        >>> from mmdet.apis import DetInferencer
        >>> inferencer = DetInferencer(model=CONFIG, weights=CHECKPOINT)
        >>> fuse_model(inferencer.model, channels_last=True)
    """
    net = unwrap_model(model)
    find_repvits(net)
    switch_to_deploy(net.eval())
    if channels_last:
        use_channels_last(net)
    return model


def deploy_copy(model: nn.Module) -> nn.Module:
    """The unwrapped model fused, eval, float32 on CPU; copied if it is not."""
    net = unwrap_model(model)
    fused = all(m.deploy for m in find_repvits(net))
    tensors = itertools.chain(net.parameters(), net.buffers())
    if fused and not any(m.training for m in net.modules()) and all(
            t.device.type == 'cpu' and (t.dtype == torch.float32
                                        or not t.is_floating_point())
            for t in tensors):
        return net
    return fuse_model(copy.deepcopy(net).cpu().float())


def _to_channels_last(module, args):
    return tuple(a.contiguous(memory_format=torch.channels_last)
                 if torch.is_tensor(a) and a.dim() == 4 else a for a in args)


def _to_contiguous(module, args, outputs):
    if torch.is_tensor(outputs):
        return outputs.contiguous()
    return type(outputs)(o.contiguous() if torch.is_tensor(o) else o
                         for o in outputs)


def use_channels_last(model: nn.Module) -> nn.Module:
    """Run the backbone and neck of ``model`` in channels_last, in place.

    Their outputs go back to NCHW for the heads: mmcv's compiled ops
    (RoIAlign) return wrong values for channels_last tensors. Idempotent.

    Args:
        model (nn.Module): A detector, segmentor or backbone, wrapped or not.

    Returns:
        nn.Module: ``model``.

    Raises:
        ValueError: The model has no backbone.
    """
    net = unwrap_model(model)
    if getattr(net, '_channels_last_hooks', None):
        return model
    if isinstance(net, RepViT):
        parts = [net]
    elif isinstance(getattr(net, 'backbone', None), nn.Module):
        parts = [m for m in (net.backbone, getattr(net, 'neck', None))
                 if isinstance(m, nn.Module)]
    else:
        raise ValueError(f'{type(net).__name__} has no backbone to run in '
                         f'channels_last.')
    for part in parts:
        part.to(memory_format=torch.channels_last)
    net._channels_last_hooks = [
        parts[0].register_forward_pre_hook(_to_channels_last),
        parts[-1].register_forward_hook(_to_contiguous)]
    return model
