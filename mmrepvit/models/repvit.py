# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
import contextlib
import warnings
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmengine.model import BaseModule
from mmengine.registry import MODELS
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.checkpoint import checkpoint

from .layers import RepViTBlock, conv_bn, fuse_modules, preserved_norm_stats


def _expand(runs: Sequence[Tuple[int, int]]) -> List[int]:
    return [c for n, c in runs for _ in range(n)]


def _arch(runs, se: str, strides: str) -> dict:
    return dict(channels=_expand(runs), se=[int(c) for c in se],
                strides=[int(c) for c in strides])


@MODELS.register_module()
class RepViT(BaseModule):
    """RepViT backbone for dense prediction.

    A re-parameterisable mobile CNN from `RepViT: Revisiting Mobile CNN From ViT
    Perspective <https://arxiv.org/abs/2307.09283>`_ (CVPR 2024). Module and
    parameter names follow the official ``features.{i}`` layout, so official
    ImageNet, COCO and ADE20K checkpoints load without conversion; timm-layout
    checkpoints are converted in memory.

    Args:
        arch (str | dict): One of ``'m0_6'``, ``'m0_9'``, ``'m1_0'``, ``'m1_1'``,
            ``'m1_5'``, ``'m2_3'``, or a dict with equally long lists
            ``channels`` (output width of each block), ``se`` (0/1 per block)
            and ``strides`` (1/2 per block); the width may change only at
            stride-2 blocks. Defaults to ``'m1_1'``.
        in_channels (int): Number of input image channels. Defaults to ``3``.
        out_indices (int | Sequence[int] | None): Indices into ``features``
            (0 is the stem, ``i`` the i-th block) whose outputs are returned;
            negative indices count from the end. ``None`` selects the arch's
            detection taps (the block before the last block of each of the
            first three stages, and the last block), as used by the paper.
            Defaults to ``None``.
        frozen_stages (int): Stages to freeze (parameters without gradients,
            norm layers in eval mode): ``-1`` none, ``0`` the stem, ``k`` the
            stem and the first ``k`` stages. A stage is a run of blocks that
            starts at a stride-2 block. Defaults to ``-1``.
        norm_eval (bool): Keep every norm layer in eval mode during training
            (frozen running statistics; affine parameters still learn), as
            the official detection and segmentation code does.
            Defaults to ``False``.
        norm_cfg (dict): Norm layer config, ``dict(type='BN')`` or
            ``dict(type='SyncBN')`` for example. Defaults to
            ``dict(type='BN')``.
        drop_path_rate (float): Stochastic depth rate of the residual channel
            mixers, rising linearly from 0 over the blocks. The official
            network uses none. Defaults to ``0.``.
        with_cp (bool): Gradient checkpointing per block: the same outputs,
            gradients and BatchNorm statistics, with less activation memory
            and about one more forward pass of compute. Defaults to ``False``.
        deploy (bool): Build the fused (re-parameterised) form directly, for
            checkpoints saved after :meth:`switch_to_deploy`.
            Defaults to ``False``.
        init_cfg (dict | list[dict] | None): Initialisation config;
            ``dict(type='Pretrained', checkpoint=PATH_OR_URL, prefix=...)``
            loads official, timm, MMEngine and plain checkpoints (see
            :func:`mmrepvit.load_pretrained`). Defaults to ``None``.

    Example:
        >>> import torch
        >>> from mmrepvit import RepViT
        >>> model = RepViT('m0_6').eval()
        >>> for out in model(torch.rand(1, 3, 224, 224)):
        ...     print(tuple(out.shape))
        (1, 40, 56, 56)
        (1, 80, 28, 28)
        (1, 160, 14, 14)
        (1, 320, 7, 7)
    """

    arch_zoo: Dict[str, dict] = {
        'm0_6': _arch([(2, 40), (3, 80), (10, 160), (2, 320)],
                      '10010010101010001', '11211211111111121'),
        'm0_9': _arch([(3, 48), (4, 96), (16, 192), (3, 384)],
                      '10001000101010101010100010',
                      '11121112111111111111111211'),
        'm1_0': _arch([(3, 56), (4, 112), (16, 224), (3, 448)],
                      '10001000101010101010100010',
                      '11121112111111111111111211'),
        'm1_1': _arch([(3, 64), (4, 128), (14, 256), (3, 512)],
                      '100010001010101010100010', '111211121111111111111211'),
        'm1_5': _arch([(5, 64), (6, 128), (26, 256), (5, 512)],
                      '101000101000101010101010101010101010001010',
                      '111112111112111111111111111111111111121111'),
        'm2_3': _arch([(7, 80), (8, 160), (36, 320), (3, 640)],
                      '10101000101010001010101010101010101010101010101010'
                      '0010',
                      '11111112111111121111111111111111111111111111111111'
                      '1211'),
    }

    def __init__(self,
                 arch: Union[str, dict] = 'm1_1',
                 in_channels: int = 3,
                 out_indices: Union[int, Sequence[int], None] = None,
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 norm_cfg: Optional[dict] = None,
                 drop_path_rate: float = 0.,
                 with_cp: bool = False,
                 deploy: bool = False,
                 init_cfg: Union[dict, List[dict], None] = None):
        super().__init__(init_cfg=init_cfg)
        self.arch_settings = self._parse_arch(arch)
        self.arch_name = arch if isinstance(arch, str) else 'custom'
        channels = self.arch_settings['channels']
        se = self.arch_settings['se']
        strides = self.arch_settings['strides']
        num_blocks = len(channels)
        if not 0.0 <= drop_path_rate < 1.0:
            raise ValueError(
                f'drop_path_rate must be in [0, 1), got {drop_path_rate}.')
        self.in_channels = in_channels
        self.norm_cfg = dict(type='BN') if norm_cfg is None else norm_cfg
        self.deploy = deploy

        # Stages: the stem is stage 0; stage k (k >= 1) starts at the first
        # block or at a stride-2 block. stage_ends[k] is its last features idx.
        starts = [i + 1 for i, s in enumerate(strides) if s == 2 or i == 0]
        self.stage_ends = [0] + [s - 1 for s in starts[1:]] + [num_blocks]
        self.det_taps = [max(e - 1, 0) for e in self.stage_ends[1:-1]] + \
            [num_blocks]
        self.seg_taps = self.stage_ends[1:]

        c0 = channels[0]
        stem = nn.Sequential(
            conv_bn(in_channels, c0 // 2, 3, 2, 1, norm_cfg=self.norm_cfg,
                    deploy=deploy), nn.GELU(),
            conv_bn(c0 // 2, c0, 3, 2, 1, norm_cfg=self.norm_cfg,
                    deploy=deploy))
        dpr = torch.linspace(0, drop_path_rate, num_blocks).tolist()
        layers = [stem]
        in_c = c0
        for i in range(num_blocks):
            layers.append(
                RepViTBlock(in_c, channels[i], strides[i], bool(se[i]),
                            dpr[i], self.norm_cfg, deploy))
            in_c = channels[i]
        self.features = nn.ModuleList(layers)

        self.out_indices = self._parse_out_indices(out_indices)
        if not -1 <= frozen_stages < len(self.stage_ends):
            raise ValueError(
                f'frozen_stages must be in [-1, {len(self.stage_ends) - 1}] '
                f'(-1: none, 0: the stem, k: the stem and the first k of the '
                f'{len(self.stage_ends) - 1} stages), got {frozen_stages}.')
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.with_cp = with_cp

        # (channels, stride) of every tapped output, so callers such as FPN
        # never hard-code widths.
        widths = [c0] + channels
        reductions = [4]
        for s in strides:
            reductions.append(reductions[-1] * s)
        self.feature_info = [
            dict(num_chs=widths[i], reduction=reductions[i],
                 module=f'features.{i}') for i in self.out_indices
        ]
        self.out_channels = [info['num_chs'] for info in self.feature_info]
        self._freeze_stages()

    # ------------------------------------------------------------------ args
    @classmethod
    def _parse_arch(cls, arch: Union[str, dict]) -> dict:
        if isinstance(arch, str):
            if arch not in cls.arch_zoo:
                raise ValueError(
                    f'Unknown RepViT arch {arch!r}; valid arches are '
                    f'{sorted(cls.arch_zoo)}, or a dict with keys channels, '
                    f'se and strides.')
            return cls.arch_zoo[arch]
        if not isinstance(arch, dict):
            raise TypeError(
                f'arch must be a str or a dict, got {type(arch).__name__}.')
        needed = {'channels', 'se', 'strides'}
        if set(arch) != needed:
            raise ValueError(
                f'A custom RepViT arch dict needs exactly the keys '
                f'{sorted(needed)}; missing {sorted(needed - set(arch))}, '
                f'unexpected {sorted(set(arch) - needed)}.')
        channels, se, strides = (list(arch[k]) for k in ('channels', 'se',
                                                          'strides'))
        if not channels or not len(channels) == len(se) == len(strides):
            raise ValueError(
                f'channels, se and strides of a custom RepViT arch must be '
                f'non-empty lists of one entry per block and of equal length, '
                f'got lengths {len(channels)}, {len(se)} and {len(strides)}.')
        if any(not isinstance(c, int) or c < 2 or c % 2 for c in channels):
            raise ValueError(
                f'channels must be even positive ints, got {channels}.')
        if any(s not in (0, 1) for s in se):
            raise ValueError(f'se flags must be 0 or 1, got {se}.')
        if any(s not in (1, 2) for s in strides):
            raise ValueError(f'strides must be 1 or 2, got {strides}.')
        if strides[0] != 1:
            raise ValueError('The first block must have stride 1 (the stem '
                             'already downsamples by 4).')
        for i in range(1, len(channels)):
            if strides[i] == 1 and channels[i] != channels[i - 1]:
                raise ValueError(
                    f'Block {i} has stride 1 but changes the width from '
                    f'{channels[i - 1]} to {channels[i]}; the width may change '
                    f'only at stride-2 blocks.')
        return dict(channels=channels, se=se, strides=strides)

    def _parse_out_indices(self, out_indices) -> Tuple[int, ...]:
        n = len(self.features)
        if out_indices is None:
            return tuple(self.det_taps)
        if isinstance(out_indices, int):
            out_indices = [out_indices]
        if not isinstance(out_indices, Sequence) or not out_indices:
            raise TypeError(f'out_indices must be an int or a non-empty '
                            f'sequence of ints, got {out_indices!r}.')
        parsed = []
        for index in out_indices:
            if not -n <= index < n:
                raise IndexError(
                    f'out_indices entry {index} is out of range for arch '
                    f'{self.arch_name!r}, whose features has {n} entries '
                    f'(valid: -{n}..{n - 1}; 0 is the stem).')
            parsed.append(index % n)
        return tuple(parsed)

    # ------------------------------------------------------------- forward
    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        taps = {}
        for i, layer in enumerate(self.features):
            if self.with_cp and torch.is_grad_enabled() and i > 0:
                # Non-reentrant checkpoint; the recomputation restores the
                # BatchNorm statistics so they are updated once per step.
                x = checkpoint(
                    layer, x, use_reentrant=False,
                    context_fn=lambda m=layer: (contextlib.nullcontext(),
                                                preserved_norm_stats(m)))
            else:
                x = layer(x)
            if i in self.out_indices:
                taps[i] = x
        return tuple(taps[i] for i in self.out_indices)

    # ------------------------------------------------------------ training
    def _freeze_stages(self):
        if self.frozen_stages < 0:
            return
        for i in range(self.stage_ends[self.frozen_stages] + 1):
            m = self.features[i]
            m.eval()
            for p in m.parameters():
                p.requires_grad = False

    def train(self, mode: bool = True):
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self

    # ---------------------------------------------------------- pretrained
    def init_weights(self):
        """Load ``init_cfg=dict(type='Pretrained', ...)`` with
        :func:`mmrepvit.load_pretrained` (safe loading, layout conversion and
        key checks); any other ``init_cfg`` goes to MMEngine."""
        cfg = self.init_cfg
        if isinstance(cfg, dict) and cfg.get('type') == 'Pretrained':
            from ..checkpoint import load_pretrained
            unknown = set(cfg) - {'type', 'checkpoint', 'prefix',
                                  'map_location'}
            if unknown:
                raise ValueError(
                    f'Unknown keys {sorted(unknown)} in the Pretrained '
                    f'init_cfg of RepViT; allowed: checkpoint, prefix, '
                    f'map_location.')
            load_pretrained(self, cfg['checkpoint'], prefix=cfg.get('prefix'),
                            map_location=cfg.get('map_location', 'cpu'))
            self._is_init = True
        else:
            super().init_weights()

    # -------------------------------------------------------------- deploy
    def switch_to_deploy(self) -> 'RepViT':
        """Fuse every Conv2d-BN and RepVGGDW into single convolutions, in place.

        The fused network computes exactly what this network computes in eval
        mode (the BatchNorm running statistics are folded in). Calling it in
        training mode is allowed but warns, because a training-mode network
        normalises with batch statistics and the fused one cannot. Calling it
        on an already fused network does nothing. Returns ``self``.
        """
        if self.deploy:
            return self
        if self.training:
            warnings.warn(
                'RepViT.switch_to_deploy() was called in training mode. The '
                'fused network folds in the BatchNorm running statistics, so it '
                'matches this network in eval mode only; call model.eval() '
                'first to compare outputs.', stacklevel=2)
        fuse_modules(self.features)
        self.deploy = True
        self._freeze_stages()
        return self


def switch_to_deploy(model: nn.Module) -> int:
    """Call :meth:`RepViT.switch_to_deploy` on every RepViT inside ``model``
    (a detector, a segmentor or a bare backbone). Returns how many RepViT
    backbones were fused (already fused ones are not counted)."""
    count = 0
    for m in model.modules():
        if isinstance(m, RepViT) and not m.deploy:
            m.switch_to_deploy()
            count += 1
    return count
