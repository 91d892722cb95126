# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
"""Shared test helpers: randomised weights and the timm layout written out by
hand from the description of timm's layout, independent of mmrepvit's
converter."""
import contextlib
import logging
import re
import runpy
import sys
from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn as nn


def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every parameter and BatchNorm statistic a random, non-trivial
    value so that fusion errors cannot hide behind identity initialisation.

    A whole RepViT then gets the BatchNorm statistics of random images, as
    training leaves them (:func:`calibrate_bn`): with statistics that do not
    match its activations they grow ~1e4-fold through the residual blocks,
    and the float32 outputs of such a network hang on rounding (its fused
    and unfused forms differed by over 1e-4 relative on 13% of random
    inputs, 0.36 at worst; calibrated, 1e-5 at most on m0_6)."""
    from mmrepvit import RepViT
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            elif isinstance(m, nn.Conv2d):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) /
                               fan_in**0.5)
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
    if isinstance(model, RepViT):
        calibrate_bn(model, torch.randn(8, model.in_channels, 64, 64,
                                        generator=g))
    return model


@torch.no_grad()
def calibrate_bn(model: nn.Module, images: torch.Tensor) -> nn.Module:
    """Set the running statistics of every BatchNorm that trains to those
    of ``images`` (one training-mode pass, cumulative average from zero
    batches: the pass replaces them), keeping the model's mode and the
    layers' momentum; frozen ones (frozen_stages, norm_eval) keep theirs."""
    bns = [m for m in model.modules()
           if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.num_batches_tracked.zero_()
        m.momentum = None
    training = model.training
    model.train()(images)
    model.train(training)
    for m, momentum in zip(bns, momenta):
        m.momentum = momentum
    return model


def head_tensors(num_features: int, distilled: bool = True) -> dict:
    """An official classification head (BatchNorm1d + Linear per branch)."""
    out = OrderedDict()
    for branch in ['classifier'] + (['classifier_dist'] if distilled else []):
        p = f'classifier.{branch}.'
        out[p + 'bn.weight'] = torch.ones(num_features)
        out[p + 'bn.bias'] = torch.zeros(num_features)
        out[p + 'bn.running_mean'] = torch.zeros(num_features)
        out[p + 'bn.running_var'] = torch.ones(num_features)
        out[p + 'bn.num_batches_tracked'] = torch.tensor(0)
        out[p + 'l.weight'] = torch.randn(1000, num_features)
        out[p + 'l.bias'] = torch.zeros(1000)
    return out


def to_timm_by_hand(state: dict, strides: list) -> dict:
    """Write an official-layout state dict in timm's layout, following the
    timm layout's description literally (stem, stages.{s}.blocks.{j},
    stages.{s}.downsample.{pre_block,spatial_downsample,channel_downsample,
    ffn}, head.head / head.head_dist)."""
    # Where each features index goes.
    place = {0: 'stem'}
    stage, j = 0, 0
    n = len(strides)
    for i in range(1, n + 1):
        if i < n and strides[i] == 2:          # block i+1 is stride-2
            place[i] = f'stages.{stage + 1}.downsample.pre_block'
        elif strides[i - 1] == 2:
            stage, j = stage + 1, 0
            place[i] = f'stages.{stage}.downsample'
        else:
            place[i] = f'stages.{stage}.blocks.{j}'
            j += 1
    block_inner = {'token_mixer.0': 'token_mixer', 'token_mixer.1': 'se',
                   'channel_mixer.m.0': 'channel_mixer.conv1',
                   'channel_mixer.m.2': 'channel_mixer.conv2'}
    down_inner = {'token_mixer.0': 'spatial_downsample',
                  'token_mixer.2': 'channel_downsample',
                  'channel_mixer.m.0': 'ffn.conv1',
                  'channel_mixer.m.2': 'ffn.conv2'}
    out = OrderedDict()
    for k, v in state.items():
        if k.startswith('classifier.'):
            new = k.replace('classifier.classifier_dist.', 'head.head_dist.')
            new = new.replace('classifier.classifier.', 'head.head.')
        elif k.startswith('features.0.'):
            new = k.replace('features.0.0.', 'stem.conv1.').replace(
                'features.0.2.', 'stem.conv2.')
        else:
            m = re.match(r'features\.(\d+)\.(token_mixer\.\d|'
                         r'channel_mixer\.m\.\d)\.(.*)', k)
            i, inner, rest = int(m.group(1)), m.group(2), m.group(3)
            table = down_inner if place[i].endswith('downsample') \
                else block_inner
            new = f'{place[i]}.{table[inner]}.{rest}'
        out[new] = v
    return out


REPO = Path(__file__).resolve().parents[1]
ARCHES = ['m0_6', 'm0_9', 'm1_0', 'm1_1', 'm1_5', 'm2_3']
# The stride of every block, as the official code (github.com/THU-MIG/RepViT)
# writes it.
STRIDES = {
    'm0_6': '11211211111111121',
    'm0_9': '11121112111111111111111211',
    'm1_0': '11121112111111111111111211',
    'm1_1': '111211121111111111111211',
    'm1_5': '111112111112111111111111111111111111121111',
    'm2_3': '111111121111111211111111111111111111111111111111111211',
}
# The features the official detection and segmentation
# code tap, and the FPN widths.
DET_TAPS = {'m0_6': [1, 4, 14, 17], 'm0_9': [2, 6, 22, 26],
            'm1_0': [2, 6, 22, 26], 'm1_1': [2, 6, 20, 24],
            'm1_5': [4, 10, 36, 42], 'm2_3': [6, 14, 50, 54]}
SEG_TAPS = {'m0_6': [2, 5, 15, 17], 'm0_9': [3, 7, 23, 26],
            'm1_0': [3, 7, 23, 26], 'm1_1': [3, 7, 21, 24],
            'm1_5': [5, 11, 37, 42], 'm2_3': [7, 15, 51, 54]}
WIDTHS = {'m0_6': [40, 80, 160, 320], 'm0_9': [48, 96, 192, 384],
          'm1_0': [56, 112, 224, 448], 'm1_1': [64, 128, 256, 512],
          'm1_5': [64, 128, 256, 512], 'm2_3': [80, 160, 320, 640]}
RELEASE_URL = 'https://github.com/THU-MIG/RepViT/releases/download/v1.0/'


def load_config_file(path):
    """A config file, with its default scope made current."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    cfg = Config.fromfile(str(path))
    init_default_scope(cfg.default_scope)
    return cfg


def load_config(kind: str, name: str):
    """configs/{kind}/{name}, with its default scope made current."""
    return load_config_file(REPO / 'configs' / kind / name)


def build_model(cfg):
    """Build cfg.model in its scope without the URL init (tests never
    download)."""
    from mmengine.registry import MODELS
    cfg.model.backbone.init_cfg = None
    model = MODELS.build(cfg.model)
    model.init_weights()
    return model


def import_tool(path: str):
    """A script (``tools/test.py``, ``.dev_scripts/gpu_check.py``, ...) as a
    module, to test the functions it holds; its ``main()`` does not run.
    As when Python runs it, the modules beside it import."""
    import importlib.util
    name = re.sub(r'\W', '_', path.removesuffix('.py'))
    spec = importlib.util.spec_from_file_location(name, REPO / path)
    module = importlib.util.module_from_spec(spec)
    folder = str((REPO / path).parent)
    sys.path.insert(0, folder)
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(folder)
    return module


def run_tool(monkeypatch, tool: str, *args):
    """A tool (``'tools/train.py'``, ...) with ``args``, in this process, as
    ``python TOOL ARGS`` runs it: what it raises (an uncaught exception: a
    traceback for a user; ``SystemExit``) reaches the test, what it prints
    goes to ``capsys``."""
    monkeypatch.setenv('LOCAL_RANK', '0')   # load_config sets it
    monkeypatch.setattr(sys, 'argv', [tool] + [str(a) for a in args])
    runpy.run_path(str(REPO / tool), run_name='__main__')


def random_state(model) -> dict:
    """The model's state dict with every float tensor re-drawn at random, so
    a load that silently skips a tensor is caught."""
    return {k: torch.randn_like(v.float()).to(v.dtype)
            if v.is_floating_point() else v
            for k, v in model.state_dict().items()}


def assert_loads_strictly(model, path, state):
    """MMEngine's load_checkpoint with strict=True (raises on any missing or
    unexpected key; torch.load runs with PyTorch's default weights_only=True)
    gives exactly ``state``."""
    from mmengine.runner import load_checkpoint
    load_checkpoint(model, str(path), strict=True)
    loaded = model.state_dict()
    assert loaded.keys() == state.keys()
    assert all(torch.equal(loaded[k], state[k]) for k in state)


def assert_paper_backbone(cfg, arch, taps):
    """The config's backbone is the paper's: frozen BatchNorm statistics,
    SyncBN, the official ImageNet weights, and the ``features`` the paper's
    code taps (``taps``), as wide as its FPN expects; the run is seeded as
    the official one (seed 0)."""
    from mmrepvit import RepViT
    bb = cfg.model.backbone
    assert bb.type == 'RepViT' and bb.arch == arch
    assert bb.norm_eval is True and bb.norm_cfg.type == 'SyncBN'
    weights = 'distill_450e' if arch == 'm2_3' else 'distill_300e'
    assert bb.init_cfg == dict(
        type='Pretrained',
        checkpoint=f'{RELEASE_URL}repvit_{arch}_{weights}.pth')
    backbone = RepViT(**{k: v for k, v in bb.items()
                         if k not in ('type', 'init_cfg')})
    assert [backbone.stage_outputs[i] for i in backbone.out_indices] == taps
    assert list(cfg.model.neck.in_channels) == backbone.out_channels == \
        WIDTHS[arch]
    assert cfg.randomness == dict(seed=0)


@contextlib.contextmanager
def logged_messages():
    """The messages MMEngine's current logger logs inside the block. The
    logger is a fresh one: MMEngine's loggers drop a WARNING they have
    already logged once, and other tests may have logged it."""
    from mmengine.logging import MMLogger
    logged = []
    handler = logging.Handler()
    handler.emit = lambda record: logged.append(record.getMessage())
    logger = MMLogger.get_instance(f'logged_messages_{id(logged)}',
                                   log_level='INFO')
    logger.addHandler(handler)
    try:
        yield logged
    finally:
        logger.removeHandler(handler)
