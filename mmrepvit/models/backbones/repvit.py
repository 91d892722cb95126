# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
import contextlib
import itertools
import warnings
from logging import WARNING
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmengine.logging import print_log
from mmengine.model import BaseModule
from mmengine.registry import MODELS
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.checkpoint import checkpoint

from ..layers.repvit_blocks import build_features, fuse_modules
from ..utils import BackboneState, backbone_state_dict
from ..utils.ckpt_convert import FUSED_KEYS, UNFUSED_KEYS


@MODELS.register_module()
class RepViT(BaseModule):
    """RepViT backbone from `RepViT: Revisiting Mobile CNN From ViT
    Perspective <https://arxiv.org/abs/2307.09283>`_ (CVPR 2024).

    Parameters follow the official ``features.{i}`` layout (0: the stem);
    timm-layout checkpoints are converted on load. Four stages at strides
    4, 8, 16 and 32, each after the first starting with a stride-2 block.

    Args:
        arch (str | dict): One of :attr:`arch_zoo`, or a dict of ``widths``
            (even) and ``depths`` (>= 2 but in the last) per stage.
            Defaults to ``'m1_1'``.
        in_channels (int): Input image channels. Defaults to ``3``.
        out_indices (int | Sequence[int]): Stages to return (negative: from
            the end). Defaults to ``(0, 1, 2, 3)``.
        stage_ends (str): ``'before_pre_block'`` as the paper's detection
            code and timm (m1_1 taps ``features`` 2, 6, 20, 24), or
            ``'before_downsample'`` as its segmentation code (3, 7, 21, 24).
            Defaults to ``'before_pre_block'``.
        frozen_stages (int): Freeze (no gradients, norms in eval mode) the
            stem and this many stages; ``-1``: nothing. Defaults to ``-1``.
        norm_eval (bool): BatchNorms in eval mode while training, as
            officially. Defaults to ``False``.
        norm_cfg (dict): mmcv norm config; only BatchNorm fuses.
            Defaults to ``dict(type='BN')``.
        drop_path_rate (float): Stochastic depth of the channel mixers,
            rising linearly from 0 (none officially). Defaults to ``0.``.
        with_cp (bool): Gradient checkpointing per block (same results, less
            memory). Defaults to ``False``.
        deploy (bool): Build the fused form (see :meth:`switch_to_deploy`).
            Defaults to ``False``.
        init_cfg (dict | list[dict] | None): A ``Pretrained`` entry loads
            with :meth:`load_pretrained`. Defaults to ``None``.

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
        'm0_6': dict(widths=(40, 80, 160, 320), depths=(2, 3, 10, 2)),
        'm0_9': dict(widths=(48, 96, 192, 384), depths=(3, 4, 16, 3)),
        'm1_0': dict(widths=(56, 112, 224, 448), depths=(3, 4, 16, 3)),
        'm1_1': dict(widths=(64, 128, 256, 512), depths=(3, 4, 14, 3)),
        'm1_5': dict(widths=(64, 128, 256, 512), depths=(5, 6, 26, 5)),
        'm2_3': dict(widths=(80, 160, 320, 640), depths=(7, 8, 36, 3)),
    }

    def __init__(self, arch: Union[str, dict] = 'm1_1', in_channels: int = 3,
                 out_indices: Union[int, Sequence[int]] = (0, 1, 2, 3),
                 stage_ends: str = 'before_pre_block', frozen_stages: int = -1,
                 norm_eval: bool = False, norm_cfg: Optional[dict] = None,
                 drop_path_rate: float = 0., with_cp: bool = False,
                 deploy: bool = False,
                 init_cfg: Union[dict, List[dict], None] = None):
        super().__init__(init_cfg=init_cfg)
        if isinstance(arch, str) and arch not in self.arch_zoo:
            raise ValueError(
                f'Unknown RepViT arch {arch!r}; valid arches are '
                f'{sorted(self.arch_zoo)}, or a dict with keys widths and '
                f'depths.')
        self.arch_settings = (self.arch_zoo[arch] if isinstance(arch, str)
                              else _custom_arch(arch))
        self.arch_name = arch if isinstance(arch, str) else 'custom'
        if not 0.0 <= drop_path_rate < 1.0:
            raise ValueError(
                f'drop_path_rate must be in [0, 1), got {drop_path_rate}.')
        self.in_channels = in_channels
        self.norm_cfg = dict(type='BN') if norm_cfg is None else norm_cfg
        self.deploy = deploy
        self.features = build_features(self.arch_settings, in_channels,
                                       self.norm_cfg, deploy, drop_path_rate)
        if stage_ends not in ('before_pre_block', 'before_downsample'):
            raise ValueError(
                f"stage_ends must be one of ('before_pre_block', "
                f"'before_downsample'), got {stage_ends!r}.")
        self.stage_ends = stage_ends
        ends = list(itertools.accumulate(self.arch_settings['depths']))
        if stage_ends == 'before_pre_block':
            ends = [i - 1 for i in ends[:-1]] + ends[-1:]
        self.stage_outputs = ends
        self.out_indices = _stage_indices(out_indices, len(ends),
                                          self.arch_name)
        if not (isinstance(frozen_stages, int)
                and -1 <= frozen_stages <= len(ends)):
            raise ValueError(
                f'frozen_stages must be in [-1, {len(ends)}], an integer (-1: '
                f'none, 0: the stem, k: the stem and the first k of the '
                f'{len(ends)} stages), got {frozen_stages!r}.')
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.with_cp = with_cp
        widths = self.arch_settings['widths']
        self.feature_info = [
            dict(num_chs=widths[i], reduction=4 * 2**i,
                 module=f'features.{ends[i]}') for i in self.out_indices]
        self.out_channels = [widths[i] for i in self.out_indices]
        self._freeze_stages()

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        if x.dim() != 4:
            raise ValueError(
                f'RepViT expects a 4-D image batch (N, C, H, W), got a '
                f'{x.dim()}-D tensor of shape {tuple(x.shape)}.')
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f'RepViT was built for {self.in_channels}-channel images but '
                f'got {x.shape[1]} channels; set in_channels={x.shape[1]} in '
                f'the backbone config or convert the images.')
        wanted = {self.stage_outputs[i]: i for i in self.out_indices}
        outs = {}
        for index, layer in enumerate(self.features):
            if self.with_cp and torch.is_grad_enabled() and index > 0:
                x = checkpoint(
                    layer, x, use_reentrant=False,
                    context_fn=lambda m=layer: (contextlib.nullcontext(),
                                                _preserved_norm_stats(m)))
            else:
                x = layer(x)
            if index in wanted:
                outs[wanted[index]] = x
        return tuple(outs[i] for i in self.out_indices)

    def _freeze_stages(self):
        last = ([-1, 0] + self.stage_outputs)[self.frozen_stages + 1]
        for layer in self.features[:last + 1]:
            layer.eval()
            for p in layer.parameters():
                p.requires_grad = False

    def train(self, mode: bool = True):
        if mode and getattr(self, '_fused_by_load', False):
            raise RuntimeError(
                'This RepViT switched to its fused (deploy) form to load a '
                'fused checkpoint, a form for inference (an optimizer built '
                'before still holds the replaced parameters). To fine-tune, '
                'load the training-form checkpoint; to train the fused '
                'network, set model.backbone.deploy=True.')
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self

    def init_weights(self):
        """Apply ``init_cfg``; a ``Pretrained`` entry last, by
        :meth:`load_pretrained`."""
        cfg = self.init_cfg
        entries = list(cfg) if isinstance(cfg, (list, tuple)) else [cfg]
        pretrained = [c for c in entries
                      if isinstance(c, dict) and c.get('type') == 'Pretrained']
        if len(pretrained) > 1:
            raise ValueError(
                f'The init_cfg of RepViT has {len(pretrained)} Pretrained '
                f'entries; give one checkpoint.')
        if not pretrained:
            return super().init_weights()
        self.init_cfg = [c for c in entries if c is not pretrained[0]]
        try:
            if self.init_cfg:
                super().init_weights()
        finally:
            self.init_cfg = cfg
        kwargs = {k: v for k, v in pretrained[0].items() if k != 'type'}
        unknown = set(kwargs) - {'checkpoint', 'prefix', 'map_location'}
        if unknown:
            raise ValueError(
                f'Unknown keys {sorted(unknown)} in the Pretrained init_cfg '
                f'of RepViT; allowed: checkpoint, prefix, map_location.')
        self.load_pretrained(**kwargs)
        self._is_init = True

    def load_pretrained(self, checkpoint: Union[str, dict],
                        prefix: Optional[str] = None, map_location='cpu',
                        logger='current', source: Optional[str] = None
                        ) -> BackboneState:
        """Load backbone weights: read safely, convert the layout, check the
        fit, then ``load_state_dict`` (which adapts the form).

        Args:
            checkpoint (str | dict): A path, an http(s) URL, or a checkpoint
                already read.
            prefix (str, optional): Key prefix of the backbone, e.g.
                ``'backbone.'``. Defaults to ``None``.
            map_location: Where tensors are loaded. Defaults to ``'cpu'``.
            logger: Where the report goes. Defaults to ``'current'``.
            source (str, optional): How errors name a dict checkpoint.
                Defaults to ``None``.

        Returns:
            BackboneState: Tensors loaded, layout, dropped, missing and
            unexpected keys.

        Raises:
            ValueError: No tensor matches, shapes differ (another arch or
                ``in_channels``), or fused weights meet the training form.
        """
        if isinstance(checkpoint, str):
            source = source or checkpoint
        name = f'checkpoint {source!r}'
        own = self.state_dict()
        training = (self._training_form('meta').state_dict() if self.deploy
                    else own)
        state, layout, dropped, missing, unexpected = backbone_state_dict(
            checkpoint, prefix, name, check=dict(
                training=training, deploy=own if self.deploy else None,
                arch=self.arch_name, in_channels=self.in_channels),
            map_location=map_location)
        matched = {k: v for k, v in state.items() if k not in unexpected}
        self._fill_missing = missing   # _load_from_state_dict fuses these too
        try:
            self.load_state_dict(matched, strict=False)
        finally:
            del self._fill_missing
        extra = (f', prefix {prefix!r}' if prefix else '') + (
            f', dropped {len(dropped)} classification-head tensors'
            if dropped else '')
        print_log(
            f'Loaded {len(matched)}/{len(matched) + len(missing)} tensors of '
            f'RepViT-{self.arch_name}{" (deploy)" if self.deploy else ""} '
            f'from {source} ({layout} layout{extra}).', logger=logger)
        if missing:
            print_log(f'Missing keys in {name} ({len(missing)}; these keep '
                      f'their initialisation): {missing}', logger, WARNING)
        if unexpected:
            print_log(f'Unexpected keys in {name} ({len(unexpected)}; '
                      f'ignored): {unexpected}', logger, WARNING)
        return BackboneState(matched, layout, dropped, missing, unexpected)

    def _training_form(self, device=None) -> 'RepViT':
        """A training-form twin (on ``'meta'``: its shapes only)."""
        with torch.device(device or 'cpu'):
            return RepViT(self.arch_settings, self.in_channels, out_indices=0,
                          norm_cfg=self.norm_cfg)

    def switch_to_deploy(self) -> 'RepViT':
        """Fuse every Conv2d-BN and RepVGGDW into one convolution, in place
        (equal in eval mode: BatchNorm statistics folded in); returns self."""
        if self.deploy:
            return self
        if self.training:
            warnings.warn(
                'RepViT.switch_to_deploy() in training mode: the fused '
                'network folds in the BatchNorm running statistics, so it '
                'matches in eval mode only; call model.eval() first.',
                stacklevel=2)
        self._fuse()
        return self

    def _fuse(self):
        fuse_modules(self.features)
        self.deploy = True
        self._freeze_stages()

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """Load either form into either: the one place that adapts it."""
        own = {k[len(prefix):]: v for k, v in state_dict.items()
               if k.startswith(prefix)}
        name = prefix[:-1] or type(self).__name__
        if not self.deploy and any(map(FUSED_KEYS.match, own)):
            self._fuse()
            self._fused_by_load = True
            print_log(f'{name}: the checkpoint holds a fused RepViT, so the '
                      f'backbone switched to its deploy form to load it.',
                      logger='current')
        elif self.deploy and any(map(UNFUSED_KEYS.match, own)):
            training = self._training_form()
            missing, unexpected = training.load_state_dict(own, strict=False)
            # fusing without an unreported key would use random weights
            missing = [k for k in missing if not k.endswith('batches_tracked')
                       and k not in getattr(self, '_fill_missing', ())]
            if missing or unexpected:
                raise ValueError(
                    f'{name}: the checkpoint holds training-form RepViT '
                    f'weights that do not fit this deploy-form backbone: '
                    f'{len(missing)} missing (e.g. {missing[:3]}), '
                    f'{len(unexpected)} unexpected (e.g. {unexpected[:3]}). '
                    f'Check the arch, or fuse a complete checkpoint with '
                    f'tools/deploy/reparameterize.py.')
            for key in own:
                del state_dict[prefix + key]
            fused = training.eval().switch_to_deploy().state_dict()
            state_dict.update((prefix + k, v) for k, v in fused.items())
            print_log(f'{name}: fused the training-form RepViT weights of '
                      f'the checkpoint to load them into the deploy-form '
                      f'backbone.', logger='current')
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def _custom_arch(arch: dict) -> dict:
    """Check a custom arch dict; return it with tuples."""
    if not isinstance(arch, dict):
        raise TypeError(
            f'arch must be a str or a dict, got {type(arch).__name__}.')
    keys, needed = set(arch), {'widths', 'depths'}
    if keys != needed:
        raise ValueError(f'A custom arch dict has the keys widths and depths; '
                         f'missing {sorted(needed - keys)}, unexpected '
                         f'{sorted(keys - needed)}.')
    widths, depths = tuple(arch['widths']), tuple(arch['depths'])
    if not widths or len(widths) != len(depths):
        raise ValueError(f'widths and depths need one entry per stage, got '
                         f'{widths} and {depths}.')
    if any(not isinstance(w, int) or w < 2 or w % 2 for w in widths):
        raise ValueError(f'widths must be even ints >= 2, got {widths}.')
    minimum = [2] * (len(depths) - 1) + [1]
    if any(not isinstance(d, int) or d < m for d, m in zip(depths, minimum)):
        raise ValueError(f'depths must be ints, at least 2 in every stage but '
                         f'the last and 1 in the last, got {depths}.')
    return dict(widths=widths, depths=depths)


def _stage_indices(out_indices, n: int, arch: str) -> Tuple[int, ...]:
    """``out_indices`` checked, as stages in ``[0, n)``."""
    if isinstance(out_indices, int):
        out_indices = [out_indices]
    if not isinstance(out_indices, Sequence) or not out_indices or \
            not all(isinstance(i, int) for i in out_indices):
        raise TypeError(f'out_indices must be an int or a non-empty '
                        f'sequence of ints, got {out_indices!r}.')
    bad = [i for i in out_indices if not -n <= i < n]
    if bad:
        raise IndexError(
            f'out_indices entry {bad[0]} is out of range: RepViT {arch!r} '
            f'has {n} stages (valid: 0..{n - 1} or -{n}..-1).')
    return tuple(i % n for i in out_indices)


@contextlib.contextmanager
def _preserved_norm_stats(module: nn.Module):
    """Restore norm running statistics on exit: a recomputation under
    gradient checkpointing must not update them twice."""
    saved = [(buf, buf.clone()) for buf in module.buffers()]   # norms' only
    try:
        yield
    finally:
        for buf, value in saved:
            buf.copy_(value)
