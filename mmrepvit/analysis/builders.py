# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
"""The models the analysis tools measure, and example inputs for them.

- A bare arch (``'m1_1'``, ...) is measured as the paper measures it: the
  ImageNet-1K classifier (:class:`ImageClassifier`: the backbone's last
  stage, global average pooling, the official BN + Linear head) for compute,
  and the dense-prediction backbone (four stages out) for latency.
  ``'resnet50'`` is MMDetection's ResNet-50 with a 1000-class Linear head,
  the baseline.
- A config builds its detector or segmentor with random weights (nothing is
  downloaded) and BN in place of SyncBN (the same network in eval mode, and
  what a single process can run). :func:`resnet50_twin` swaps its backbone
  for the ResNet-50 that MMDetection's or MMSegmentation's own config of the
  same model uses, so the two differ in the backbone only.
- :func:`to_deploy` is the deploy form: ``mmrepvit.switch_to_deploy`` plus,
  for the classifier, the head's BN folded into its Linear.
"""
import contextlib
import copy
from functools import partial
from typing import Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config_checks import warn_ineffective_options
from ..models import RepViT, switch_to_deploy
from ..runner import replace_syncbn

BASELINE = 'resnet50'
# The ResNet-50 of the library's own model of the same kind.
RESNET50_MODELS = {
    'mmdet': 'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    'mmseg': 'mmseg::_base_/models/fpn_r50.py',
}


def arch_names() -> list:
    """Everything ``--arch`` accepts: the RepViT arches and the baseline."""
    return list(RepViT.arch_zoo) + [BASELINE]


def display_name(arch: str) -> str:
    """'m1_1' -> 'RepViT-M1.1', 'resnet50' -> 'ResNet-50'."""
    if arch == BASELINE:
        return 'ResNet-50'
    return 'RepViT-' + arch.upper().replace('_', '.')


# ------------------------------------------------------------ classifier
class ClassifierHead(nn.Module):
    """The official RepViT classification head: BatchNorm1d (``bn``), then
    Linear (``l``)."""

    def __init__(self, in_features: int, num_classes: int = 1000):
        super().__init__()
        self.bn = nn.BatchNorm1d(in_features)
        self.l = nn.Linear(in_features, num_classes)  # noqa: E741

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.l(self.bn(x))

    @torch.no_grad()
    def fuse(self) -> nn.Linear:
        """One Linear equal to this head in eval mode (computed in float64,
        rounded once)."""
        bn, lin = self.bn, self.l
        scale = bn.weight.double() / (bn.running_var.double() + bn.eps).sqrt()
        shift = bn.bias.double() - bn.running_mean.double() * scale
        weight = lin.weight.double()
        fused = nn.Linear(lin.in_features, lin.out_features,
                          device=lin.weight.device, dtype=lin.weight.dtype)
        fused.weight.copy_(weight * scale[None, :])
        fused.bias.copy_(lin.bias.double() + weight @ shift)
        return fused


class ImageClassifier(nn.Module):
    """An ImageNet classifier around a backbone: its last feature map,
    global average pooling, then ``head``.

    RepViT gets the official head (:class:`ClassifierHead`; distilled
    checkpoints train a second, identical branch that the fused network
    averages into one, so the deployed network has one); ResNet-50 gets a
    plain Linear, as torchvision's.
    """

    def __init__(self, backbone: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.backbone(x)[-1]
        return self.head(F.adaptive_avg_pool2d(x, 1).flatten(1))

    def fuse_head(self) -> bool:
        if isinstance(self.head, ClassifierHead):
            self.head = self.head.fuse()
            return True
        return False


def resnet50_backbone(out_indices: Sequence[int] = (0, 1, 2, 3)):
    """MMDetection's ResNet-50 (torchvision's layout; no torchvision
    needed)."""
    from mmdet.models.backbones import ResNet
    return ResNet(depth=50, out_indices=tuple(out_indices))


def build_backbone(arch: str, seed: int = 0) -> nn.Module:
    """The dense-prediction backbone of ``arch`` (four stage outputs), in
    eval mode with seeded random weights."""
    torch.manual_seed(seed)
    model = resnet50_backbone() if arch == BASELINE else RepViT(arch)
    model.eval()   # (mmdet's ResNet.train() returns None: no chaining)
    return model


def build_classifier(arch: str, num_classes: int = 1000,
                     seed: int = 0) -> ImageClassifier:
    """The ImageNet classifier of ``arch``, in eval mode, training form."""
    torch.manual_seed(seed)
    if arch == BASELINE:
        model = ImageClassifier(resnet50_backbone((3, )),
                                nn.Linear(2048, num_classes))
    else:
        backbone = RepViT(arch, out_indices=(-1, ))
        model = ImageClassifier(
            backbone, ClassifierHead(backbone.out_channels[-1], num_classes))
    model.eval()
    return model


def to_deploy(model: nn.Module) -> int:
    """The deploy form, in place: eval mode, every RepViT fused with
    ``mmrepvit.switch_to_deploy`` and a classifier head's BN folded into its
    Linear. Returns how many RepViT backbones were fused (0: nothing to fuse,
    for example ResNet-50)."""
    model.eval()
    fused = switch_to_deploy(model)
    if fused and isinstance(model, ImageClassifier):
        model.fuse_head()
    return fused


# ------------------------------------------------------------ configs
def load_config(config: str, cfg_options: Optional[dict] = None):
    """A detector or segmentor config: a file, or ``mmdet::``/``mmseg::``
    package paths such as ``mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py``;
    ``cfg_options`` are merged in as tools/train.py merges them, with its
    warnings for keys that change nothing."""
    from mmengine.config import Config
    from mmengine.hub import get_config
    cfg = get_config(config) if '::' in config else Config.fromfile(config)
    if cfg_options:
        warn_ineffective_options(cfg, cfg_options)
        cfg.merge_from_dict(cfg_options)
    if cfg.get('default_scope') not in RESNET50_MODELS:
        raise ValueError(
            f"{config}: default_scope is {cfg.get('default_scope')!r}; the "
            f"analysis tools take MMDetection ('mmdet') and MMSegmentation "
            f"('mmseg') configs.")
    return cfg


def model_name(cfg) -> str:
    """'RepViT-M1.1 MaskRCNN', 'ResNet-50 EncoderDecoder', ..."""
    backbone = cfg.model.backbone
    if backbone.type == 'RepViT':
        name = display_name(backbone.arch) if isinstance(
            backbone.arch, str) else 'RepViT-custom'
    elif 'depth' in backbone:
        name = f'{backbone.type}-{backbone.depth}'
    else:
        name = backbone.type
    return f'{name} {cfg.model.type}'


def resnet50_twin(cfg):
    """``cfg`` with its backbone replaced by the ResNet-50 that the library's
    own config of this kind of model uses (MMDetection's Mask R-CNN: ResNet-50,
    stem and stage 1 frozen, BN in eval mode; MMSegmentation's Semantic FPN:
    ResNetV1c-50), and the neck's input widths set to match. Everything else
    (neck, heads, train and test settings) stays."""
    from mmengine.hub import get_config
    scope = cfg.default_scope
    reference = get_config(RESNET50_MODELS[scope]).model
    if 'in_channels' not in cfg.model.get('neck', {}):
        raise ValueError(
            'A ResNet-50 twin swaps the backbone and sets the neck\'s '
            'in_channels; this config has no neck with in_channels. Pass '
            'a ResNet-50 config as the baseline instead.')
    twin = copy.deepcopy(cfg)
    twin.model.backbone = copy.deepcopy(reference.backbone)
    twin.model.neck.in_channels = list(reference.neck.in_channels)
    twin.model.pop('pretrained', None)
    return twin


def build_from_config(cfg, seed: int = 0) -> nn.Module:
    """The config's model with seeded random weights, BN for SyncBN, no
    pretrained weights, in eval mode. Makes the config's scope current."""
    from mmengine.registry import MODELS, init_default_scope
    init_default_scope(cfg.default_scope)
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.pop('pretrained', None)
    model_cfg.backbone.init_cfg = None
    replace_syncbn(model_cfg)
    torch.manual_seed(seed)
    model = MODELS.build(model_cfg)
    model.init_weights()
    model.eval()
    return model


def num_classes(cfg) -> int:
    model = cfg.model
    for head in ('roi_head.bbox_head', 'bbox_head', 'decode_head'):
        node = model
        for key in head.split('.'):
            node = node.get(key) if node is not None else None
        if node is not None and 'num_classes' in node:
            return node.num_classes
    raise ValueError(f'Cannot find num_classes in the {model.type} config.')


def packed_batch(cfg, batch: int, size: Tuple[int, int], seed: int = 0):
    """A batch as the config's dataloader packs it (uint8 images, data
    samples with ground truth): ``batch`` random images of ``size`` (H, W)."""
    height, width = size
    generator = torch.Generator().manual_seed(seed)
    classes = num_classes(cfg)
    if cfg.default_scope == 'mmdet':
        from mmdet.testing import demo_mm_inputs
        torch.manual_seed(seed)
        return demo_mm_inputs(batch, [[3, height, width]] * batch,
                              num_items=[3] * batch, num_classes=classes,
                              with_mask=True)
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    shape = (height, width)
    inputs, samples = [], []
    for _ in range(batch):
        inputs.append(torch.randint(0, 256, (3, height, width),
                                    dtype=torch.uint8, generator=generator))
        samples.append(SegDataSample(
            metainfo=dict(img_shape=shape, ori_shape=shape, pad_shape=shape),
            gt_sem_seg=PixelData(data=torch.randint(
                0, classes, (1, height, width), generator=generator))))
    return dict(inputs=inputs, data_samples=samples)


@contextlib.contextmanager
def tensor_mode(model: nn.Module, data_samples):
    """Within the block ``model(inputs)`` is ``model(inputs, data_samples,
    mode='tensor')``: backbone, neck and heads without post-processing, as
    MMDetection's and MMSegmentation's ``get_flops.py`` trace a model."""
    model.forward = partial(model.forward, data_samples=data_samples,
                            mode='tensor')
    try:
        yield model
    finally:
        del model.forward


@contextlib.contextmanager
def features_mode(model: nn.Module):
    """Within the block ``model(inputs)`` is ``model.extract_feat(inputs)``
    (backbone and neck)."""
    model.forward = model.extract_feat
    try:
        yield model
    finally:
        del model.forward


def use_quiet_logger():
    """Make a WARNING-level MMEngine logger current, so that building a
    model does not print MMEngine's report of every parameter's
    initialisation."""
    from mmengine.logging import MMLogger
    MMLogger.get_instance('mmrepvit_analysis', log_level='WARNING')
