# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
"""Parameters and multiply-accumulates (MACs) with MMEngine's complexity
analysis.

:func:`count` runs the two counters that
``mmengine.analysis.get_model_complexity_info`` runs (``FlopAnalyzer``, which
counts one multiply-add as one "flop", i.e. MACs, and ``parameter_count``), so
its totals are the numbers ``get_model_complexity_info`` prints (a test
checks it), and adds the per-module breakdown and the operators MMEngine has
no rule for (element-wise ops, activations, pooling by ``mean``: not
counted, as in the paper's numbers, which count convolutions and linear
layers).
"""
from dataclasses import dataclass, field
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from . import builders

# The paper's compute of the ImageNet classifiers (deploy form, with head,
# 3x224x224), in GMACs (Table 1 of the paper; M0.6 is not given there).
PAPER_GMACS = {'m0_9': 0.8, 'm1_0': 1.1, 'm1_1': 1.3, 'm1_5': 2.3,
               'm2_3': 4.5}

OUTSIDE = '(outside the modules above)'


@dataclass
class Complexity:
    """What :func:`count` found."""
    params: int
    macs: int
    input_shape: Tuple[int, ...]
    # module name -> (params, MACs), for the modules up to the depth asked
    by_module: Dict[str, Tuple[int, int]] = field(default_factory=dict)
    # operator -> calls that were not counted (MMEngine has no rule for them)
    uncounted: Dict[str, int] = field(default_factory=dict)


def count(model: nn.Module, inputs: Sequence[torch.Tensor],
          depth: int = 0) -> Complexity:
    """Parameters and MACs of ``model(*inputs)``, and per module down to
    ``depth`` levels (1: ``backbone``, ``neck``, heads; 0: none)."""
    from mmengine.analysis import FlopAnalyzer, parameter_count
    inputs = tuple(inputs)
    analyzer = FlopAnalyzer(model, inputs)
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    macs = analyzer.by_module()
    params = parameter_count(model)
    by_module = {}
    for name, _ in model.named_modules():
        if name and name.count('.') < depth and (params.get(name)
                                                 or macs.get(name)):
            by_module[name] = (params.get(name, 0), macs.get(name, 0))
    top = [v for k, v in by_module.items() if '.' not in k]
    if top:
        # Ops a model runs outside its children's calls (e.g. the upsampling
        # in a head's forward when the detector calls head.forward() directly
        # rather than head()) count towards the total but no child.
        rest = (params[''] - sum(p for p, _ in top),
                analyzer.total() - sum(m for _, m in top))
        if any(rest):
            by_module[OUTSIDE] = rest
    return Complexity(params=params[''], macs=analyzer.total(),
                      input_shape=tuple(inputs[0].shape), by_module=by_module,
                      uncounted=dict(analyzer.unsupported_ops()))


def arch_complexity(arch: str, deploy: bool,
                    size: Tuple[int, int] = (224, 224),
                    depth: int = 0) -> Complexity:
    """The ImageNet classifier of ``arch`` (the paper's setting: one
    3x224x224 image), in training or deploy form."""
    model = builders.build_classifier(arch)
    if deploy:
        builders.to_deploy(model)
    with torch.no_grad():
        return count(model, (torch.randn(1, 3, *size), ), depth)


def config_complexity(cfg, size: Tuple[int, int], deploy: bool,
                      depth: int = 0,
                      model: Optional[nn.Module] = None) -> Complexity:
    """A detector or segmentor of ``cfg`` on one image of ``size`` (H, W),
    after the config's data preprocessor (which pads, e.g. 800x1333 to
    800x1344 for Mask R-CNN), in ``mode='tensor'`` as MMDetection's and
    MMSegmentation's ``get_flops.py`` count it: backbone, neck and heads
    (Mask R-CNN: the RoI heads on the RPN's proposals), no post-processing."""
    if model is None:
        model = builders.build_from_config(cfg)
    if deploy:
        builders.to_deploy(model)
    data = model.data_preprocessor(builders.packed_batch(cfg, 1, size),
                                   False)
    with torch.no_grad(), builders.tensor_mode(model, data['data_samples']):
        return count(model, (data['inputs'], ), depth)


def format_count(n: float, unit: str = '') -> str:
    """7775232 -> '7.775M'; 1.337e9 -> '1.337G'."""
    for scale, suffix in ((1e12, 'T'), (1e9, 'G'), (1e6, 'M'), (1e3, 'K')):
        if abs(n) >= scale:
            return f'{n / scale:.3f}{suffix}{unit}'
    return f'{n:.0f}{unit}'
