# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
"""RepViT's blocks; each fusable one has ``fuse()`` returning its deploy
form. Child names follow the official checkpoints."""
from functools import partial
from typing import List, NamedTuple, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import build_norm_layer
from mmcv.cnn.bricks import DropPath
from torch.nn.modules.batchnorm import _BatchNorm


def build_norm(norm_cfg: Optional[dict], num_features: int) -> nn.Module:
    """A norm layer by mmcv's :func:`~mmcv.cnn.build_norm_layer`."""
    norm_cfg = norm_cfg or dict(type='BN')
    try:
        return build_norm_layer(norm_cfg, num_features)[1]
    except KeyError as e:   # mmcv's message names neither the type nor a fix
        raise KeyError(
            f'Unknown norm layer type {norm_cfg.get("type")!r} in norm_cfg; '
            f'use one mmcv registers (BN, SyncBN, GN, LN, IN, ...) or one '
            f'registered in MMEngine\'s MODELS.') from e


def _fold_bn(weight: torch.Tensor, bias, bn: _BatchNorm):
    """Weight and bias with an eval-mode BN folded in, in float64."""
    if not isinstance(bn, _BatchNorm):
        raise TypeError(
            f'Only BatchNorm folds into a convolution, not '
            f'{type(bn).__name__} (norm_cfg): train with BN or SyncBN to '
            f'deploy fused.')
    std = (bn.running_var.double() + bn.eps).sqrt()
    scale = bn.weight.detach().double() / std
    return (weight.detach().double() * scale.reshape(-1, 1, 1, 1),
            bn.bias.detach().double() + (bias - bn.running_mean.double()) *
            scale)


def _fused_conv(ref: nn.Conv2d, weight: torch.Tensor, bias,
                bn: _BatchNorm) -> nn.Conv2d:
    """A conv like ``ref`` (dtype and device too) of weight and bias with
    ``bn`` folded in, rounded once from float64."""
    weight, bias = _fold_bn(weight, bias, bn)
    conv = nn.Conv2d(
        ref.in_channels, ref.out_channels, ref.kernel_size, ref.stride,
        ref.padding, ref.dilation, ref.groups, bias=True,
        device=ref.weight.device, dtype=ref.weight.dtype)
    conv.weight.data.copy_(weight)
    conv.bias.data.copy_(bias)
    return conv


class Conv2dBN(nn.Sequential):
    """Conv2d without bias (``c``) followed by a norm layer (``bn``)."""

    def __init__(self, in_channels: int, out_channels: int,
                 kernel_size: int = 1, stride: int = 1, padding: int = 0,
                 groups: int = 1, bn_weight_init: float = 1.0,
                 norm_cfg: Optional[dict] = None):
        super().__init__()
        self.c = nn.Conv2d(in_channels, out_channels, kernel_size, stride,
                           padding, groups=groups, bias=False)
        self.bn = build_norm(norm_cfg, out_channels)
        nn.init.constant_(self.bn.weight, bn_weight_init)
        nn.init.constant_(self.bn.bias, 0)

    @torch.no_grad()
    def fuse(self) -> nn.Conv2d:
        """One Conv2d (with bias) equal to this module in eval mode."""
        return _fused_conv(self.c, self.c.weight, 0.0, self.bn)


def conv_bn(in_channels: int, out_channels: int, kernel_size: int = 1,
            stride: int = 1, padding: int = 0, groups: int = 1,
            bn_weight_init: float = 1.0, norm_cfg: Optional[dict] = None,
            deploy: bool = False) -> nn.Module:
    """A :class:`Conv2dBN`, or in deploy form the Conv2d it fuses into."""
    if deploy:
        return nn.Conv2d(in_channels, out_channels, kernel_size, stride,
                         padding, groups=groups, bias=True)
    return Conv2dBN(in_channels, out_channels, kernel_size, stride, padding,
                    groups, bn_weight_init, norm_cfg)


class RepVGGDW(nn.Module):
    """Depthwise token mixer ``bn(conv(x) + conv1(x) + x)``: 3x3 Conv2dBN
    and 1x1 conv."""

    def __init__(self, channels: int, norm_cfg: Optional[dict] = None):
        super().__init__()
        self.conv = Conv2dBN(channels, channels, 3, 1, 1, groups=channels,
                             norm_cfg=norm_cfg)
        self.conv1 = nn.Conv2d(channels, channels, 1, groups=channels)
        self.bn = build_norm(norm_cfg, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x) + self.conv1(x) + x)

    @torch.no_grad()
    def fuse(self) -> nn.Conv2d:
        """One 3x3 depthwise Conv2d equal to this module in eval mode."""
        w3, b3 = _fold_bn(self.conv.c.weight, 0.0, self.conv.bn)
        w1 = F.pad(self.conv1.weight.detach().double(), [1, 1, 1, 1])
        identity = torch.zeros_like(w3)
        identity[:, 0, 1, 1] = 1.0
        return _fused_conv(self.conv.c, w3 + w1 + identity,
                           b3 + self.conv1.bias.detach().double(), self.bn)


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation; the reduced width is ``channels / 4`` rounded
    to the nearest multiple of 8 (halves up), >= 8, as officially."""

    def __init__(self, channels: int, rd_ratio: float = 0.25,
                 divisor: int = 8):
        super().__init__()
        rd = max(divisor, int(channels * rd_ratio + divisor / 2) // divisor *
                 divisor)
        self.fc1 = nn.Conv2d(channels, rd, 1)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(rd, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.fc2(self.act(self.fc1(x.mean((2, 3), keepdim=True))))
        return x * s.sigmoid()


class Residual(nn.Module):
    """``x + drop_path(m(x))``, with mmcv's per-sample :class:`DropPath`."""

    def __init__(self, m: nn.Module, drop_path_rate: float = 0.0):
        super().__init__()
        self.m = m
        self.drop_path = (DropPath(drop_path_rate) if drop_path_rate > 0
                          else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop_path(self.m(x))


class BlockSetting(NamedTuple):
    """Output width, stride (1 or 2) and SE of one RepViT block."""
    width: int
    stride: int
    use_se: bool


def block_settings(widths: Sequence[int],
                   depths: Sequence[int]) -> List[BlockSetting]:
    """The blocks of a RepViT given its widths and depths per stage.

    Every stage but the first starts with a stride-2 block. As officially,
    even stride-1 blocks (counted from 0 after it) have SE, except a
    *pre-block* (the last block of a stage another follows).

    Args:
        widths (Sequence[int]): Output channels of each stage.
        depths (Sequence[int]): Blocks of each stage.

    Returns:
        list[BlockSetting]: Width, stride and SE of every block.
    """
    blocks = []
    for stage, (width, depth) in enumerate(zip(widths, depths)):
        for j in range(depth):
            downsamples = stage > 0 and j == 0
            pre_block = stage < len(widths) - 1 and j == depth - 1
            use_se = not (downsamples or pre_block) and j % 2 == (stage > 0)
            blocks.append(BlockSetting(width, 2 if downsamples else 1, use_se))
    return blocks


class RepViTBlock(nn.Module):
    """A token mixer (stride 1: RepVGGDW, SE; stride 2: 3x3 depthwise
    Conv2dBN, SE, 1x1 Conv2dBN), then a residual channel mixer (1x1 conv
    expanding by 2, GELU, 1x1 conv)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int,
                 use_se: bool, drop_path_rate: float = 0.0,
                 norm_cfg: Optional[dict] = None, deploy: bool = False):
        super().__init__()
        if stride != 2 and (stride != 1 or in_channels != out_channels):
            raise ValueError(
                f'A RepViT block has stride 2, or 1 keeping its width; got '
                f'stride {stride}, {in_channels} -> {out_channels} channels.')
        cbn = partial(conv_bn, norm_cfg=norm_cfg, deploy=deploy)
        se = SqueezeExcite(in_channels) if use_se else nn.Identity()
        if stride == 2:
            self.token_mixer = nn.Sequential(
                cbn(in_channels, in_channels, 3, 2, 1, groups=in_channels), se,
                cbn(in_channels, out_channels))
        else:   # RepVGGDW fuses into a 3x3 depthwise conv
            self.token_mixer = nn.Sequential(
                cbn(in_channels, in_channels, 3, 1, 1, groups=in_channels)
                if deploy else RepVGGDW(in_channels, norm_cfg), se)
        self.channel_mixer = Residual(nn.Sequential(
            cbn(out_channels, 2 * out_channels), nn.GELU(),
            cbn(2 * out_channels, out_channels, bn_weight_init=0.0)),
            drop_path_rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.channel_mixer(self.token_mixer(x))


def build_features(arch: dict, in_channels: int, norm_cfg: Optional[dict],
                   deploy: bool, drop_path_rate: float) -> nn.ModuleList:
    """RepViT's ``features``: the stem (two stride-2 3x3 Conv2dBN, GELU
    between), then the blocks, drop path rising to ``drop_path_rate``."""
    blocks = block_settings(**arch)
    width = blocks[0].width
    cbn = partial(conv_bn, kernel_size=3, stride=2, padding=1,
                  norm_cfg=norm_cfg, deploy=deploy)
    features = [nn.Sequential(cbn(in_channels, width // 2), nn.GELU(),
                              cbn(width // 2, width))]
    # on the CPU even under torch.device('meta')
    rates = torch.linspace(0, drop_path_rate, len(blocks), device='cpu')
    for block, rate in zip(blocks, rates.tolist()):
        features.append(RepViTBlock(width, block.width, block.stride,
                                    block.use_se, rate, norm_cfg, deploy))
        width = block.width
    return nn.ModuleList(features)


def fuse_modules(module: nn.Module) -> int:
    """Replace every child having ``fuse()`` by what it returns, recursively,
    in place; returns how many."""
    count = 0
    for name, child in list(module.named_children()):
        if hasattr(child, 'fuse'):
            setattr(module, name, child.fuse().train(child.training))
            count += 1
        else:
            count += fuse_modules(child)
    return count
